"""Finding flow runs whose worker died, and giving them to a live worker.

A worker records its name on each run it starts (`infrastructure_pid`) and heartbeats
to its work pool. A run that is Pending or Running while its worker has not heartbeated
for `stale_after` seconds lost its worker (killed, out of memory, machine gone): it is
marked Crashed and scheduled again (AwaitingRetry), so any worker of the pool runs it
anew. When it has lost its worker `MAX_EXECUTIONS` times it stays Crashed and the engine
gets an `error`. A run left Pending by a claim that found it ended (flows.claims) gets its
ended state back; one left Undelivered by a worker that died before scheduling it again
is scheduled (flows.redelivery).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas import OrchestrationResult
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterEndTime,
    FlowRunFilterState,
    FlowRunFilterStateName,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.states import Crashed
from prefect.types._datetime import now

from flows.claims import from_schedule, restore, states_of
from flows.compute import tell_engine_error
from flows.redelivery import UNDELIVERED, Redelivery, is_undelivered, schedule_again
from flows.results import delivery_if_known, rescheduled

log = logging.getLogger(__name__)
MAX_EXECUTIONS = 3
# Marks the runs this project's workers hold; a stock Prefect worker writes a process id.
OWNER_PREFIX = "worker:"
# How the message of a Crashed state set by a reaper begins, and how it ends once the
# engine was told of a run given up.
TAKEN_BACK = "the run crashed: its worker "
TOLD = "; the engine was told"
# How far back a sweep looks for runs a reaper left half taken back.
HALF_TAKEN_WINDOW = timedelta(hours=1)


def owner_mark(worker_name: str) -> str:
    """What a worker writes in a run's `infrastructure_pid` when it claims the run."""
    return f"{OWNER_PREFIX}{worker_name}"


def orphaned(run: FlowRun, live_workers: set[str], at: datetime, stale_after: float) -> bool:
    """True when the run's worker is gone. A run claimed moments ago, or claimed by no
    one known, waits `stale_after`: its claimer writes its name on it only as it starts
    the run, and until then the run still names its previous holder, or none."""
    holder = run.infrastructure_pid
    if holder and not holder.startswith(OWNER_PREFIX):
        return False  # held by some other kind of worker, which looks after it
    since = run.state.timestamp if run.state else None
    fresh = since is not None and at - since <= timedelta(seconds=stale_after)
    if not holder or (fresh and run.state is not None and run.state.is_pending()):
        return not fresh  # no one known holds it yet
    return holder.removeprefix(OWNER_PREFIX) not in live_workers


def left_by_predecessor(run: FlowRun, own_name: str, since: datetime) -> bool:
    """True when the run bears this worker's own name from before this process started:
    a process of the same name died holding it. A container restarted in place keeps its
    hostname and its pid (so `<hostname>-<pid>`), and WORKER_NAME stays as set; the new
    process heartbeats under that name, so no reaper would take the run back otherwise."""
    return (
        run.infrastructure_pid == owner_mark(own_name)
        and run.state is not None
        and run.state.timestamp < since
    )


def left_ended(run: FlowRun, at: datetime, stale_after: float) -> bool:
    """True when the run has been Pending for `stale_after` seconds out of an ended state:
    a claim refused (flows.claims) whose worker did not restore the state it ended in."""
    state = run.state
    if state is None or not state.is_pending() or from_schedule(state):
        return False
    return at - state.timestamp > timedelta(seconds=stale_after)


async def sweep(
    client: PrefectClient,
    *,
    pool: str,
    deployment_id: UUID,
    own_name: str,
    own_since: datetime,
    stale_after: float,
    redelivery: Redelivery,
) -> list[UUID]:
    """Reschedule (or end) the deployment's runs whose worker is gone; their ids.
    `own_since`: when this worker started, so that what an earlier process of its name
    left is told from what it runs itself. Runs a worker died before scheduling again to
    deliver their outcome (flows.redelivery) are scheduled by `redelivery`."""
    at = now("UTC")
    workers = await client.read_workers_for_work_pool(pool)
    live = {own_name} | {
        worker.name
        for worker in workers
        if worker.last_heartbeat_time is not None
        and at - worker.last_heartbeat_time <= timedelta(seconds=stale_after)
    }
    runs = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING])
            )
        ),
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
    )
    reaped = []
    for run in runs:
        if left_ended(run, at, stale_after):
            # A claim that found the run ended, by a worker that died before it restored
            # the run's state: restored here, never run again (flows.claims).
            await restore(client, run.id)
            reaped.append(run.id)
            continue
        lost = orphaned(run, live, at, stale_after)
        if (lost or left_by_predecessor(run, own_name, own_since)) and await take_back(client, run):
            reaped.append(run.id)
    # One listing for both kinds of run left between two state changes.
    left = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Crashed", UNDELIVERED])),
            end_time=FlowRunFilterEndTime(after_=at - HALF_TAKEN_WINDOW),
        ),
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
    )
    for run in left:
        if run.state is None or at - run.state.timestamp <= timedelta(seconds=stale_after):
            continue  # its own worker is on it still
        if left_half_taken(run, at, stale_after):
            message = run.state.message or TAKEN_BACK
            await finish_taking_back(client, run, message, await lost_workers(client, run.id))
            reaped.append(run.id)
        elif is_undelivered(run.state) and await schedule_again(client, run.id, redelivery):
            reaped.append(run.id)
    return reaped


async def take_back(client: PrefectClient, run: FlowRun) -> bool:
    """Mark the run Crashed, then schedule it again (or, after `MAX_EXECUTIONS`, tell the
    engine it failed); False when it had ended since it was listed.

    The listing may be older than the run's end, and Prefect takes a forced state, or a
    scheduled one, out of Completed, Failed and Crashed alike: the run would execute again
    and the engine hear a second outcome. Crashed, proposed unforced, is what the server
    refuses out of an ended state (`HandleFlowTerminalStateTransitions`), in the same
    row-locked transaction: once it is accepted the run had not ended, and is this
    reaper's to reschedule."""
    worker = (run.infrastructure_pid or "no worker").removeprefix(OWNER_PREFIX)
    lost = await lost_workers(client, run.id) + 1
    message = f"{TAKEN_BACK}({worker}) stopped answering"
    message += f", {lost} times" if lost >= MAX_EXECUTIONS else ""
    crashed: OrchestrationResult[Any] = await client.set_flow_run_state(
        run.id, Crashed(message=message)
    )
    if crashed.status != SetStateStatus.ACCEPT:
        log.info("flow run %s ended since it was listed; left as it is", run.id)
        return False
    await finish_taking_back(client, run, message, lost)
    return True


async def finish_taking_back(client: PrefectClient, run: FlowRun, message: str, lost: int) -> None:
    """The second half of `take_back`, once a reaper has marked the run Crashed (`lost`
    times in all, this one included): schedule it again, or tell the engine it failed and
    mark it told."""
    worker = message.removeprefix(TAKEN_BACK).split(")", 1)[0].removeprefix("(")
    if lost >= MAX_EXECUTIONS:
        # The delivery of this execution: no error if it delivered `finished` already.
        delivery = await delivery_if_known(client, run)
        await tell_engine_error(str(run.parameters.get("callback_url", "")), message, delivery)
        await client.set_flow_run_state(run.id, Crashed(message=message + TOLD), force=True)
        log.error("flow run %s given up: %s", run.id, message)
    else:
        await client.set_flow_run_state(
            run.id,
            rescheduled(f"its worker ({worker}) stopped answering"),
            force=True,
        )
        log.warning("flow run %s lost its worker %s; scheduled again", run.id, worker)


async def lost_workers(client: PrefectClient, flow_run_id: UUID) -> int:
    """How many times the run lost its worker: the Crashed states reapers gave it. Not
    its run count, which also counts the executions that delivered an outcome again
    (flows.redelivery) and a person's Retries."""
    return sum(
        1
        for state in await states_of(client, flow_run_id)
        if state["type"] == "CRASHED" and (state["message"] or "").startswith(TAKEN_BACK)
    )


def left_half_taken(run: FlowRun, at: datetime, stale_after: float) -> bool:
    """True when a reaper marked the run Crashed to take it back and did not finish (it
    died between its two state changes) at least `stale_after` seconds ago: nobody else
    would ever schedule it again, or tell the engine."""
    state = run.state
    if state is None or not state.is_crashed():
        return False
    message = state.message or ""
    if not message.startswith(TAKEN_BACK) or message.endswith(TOLD):
        return False
    return at - state.timestamp > timedelta(seconds=stale_after)
