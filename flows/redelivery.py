"""Delivering again an outcome the engine has not taken, once its retries ran out.

The notify stage PATCHes the engine CALLBACK_RETRIES times (about two minutes). An engine
away longer (restarting, down, unreachable) must still hear how each of its tasks ended,
and a worker must not hold a slot per task while it waits. So the run ends
`Undelivered` (a Failed state of that name, with the reason: red in the Prefect UI, and a
name an operator can filter by), and is scheduled again (`results.rescheduled`, so the
same delivery) REDELIVERY_DELAY later, twice as long at each execution, up to
REDELIVERY_MAX_DELAY. Any worker runs it then: `process` and `upload` are `Cached`, and
notify PATCHes the same outcome again.

The worker that ran it schedules it as it ends; if that worker dies in between, the
reaper of any worker does (flows.reaper). A run whose next delivery would come later
than RESULT_TTL after its hand-off is given up (its results, which make a new execution
cheap and give the engine the same outputs, are gone by then): it ends Failed, and the
log says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, State
from prefect.states import Failed
from prefect.types._datetime import now

from core.settings import WorkerSettings
from flows.claims import ended_state, from_schedule, propose_pending, restore, states_of
from flows.results import rescheduled

log = logging.getLogger(__name__)

# The name of the state of a run whose outcome the engine has not taken.
UNDELIVERED = "Undelivered"
# Doublings of the delay, at most (beyond, the maximum delay holds anyway).
_MAX_DOUBLINGS = 30


def undelivered(outcome: str, reason: str) -> State[Any]:
    """The state a run ends in when the engine did not take its outcome."""
    return Failed(
        name=UNDELIVERED,
        message=f"the engine has not taken the outcome ({outcome}) yet: {reason}",
    )


def is_undelivered(state: State[Any] | None) -> bool:
    return state is not None and state.is_failed() and state.name == UNDELIVERED


@dataclass(frozen=True)
class Redelivery:
    """When an undelivered outcome is sent again: `delay` seconds after the first
    execution, doubling with each, at most `max_delay`; never later than `within`
    seconds after the run was created."""

    delay: float
    max_delay: float
    within: float

    @classmethod
    def of(cls, settings: WorkerSettings) -> Redelivery:
        """REDELIVERY_DELAY and REDELIVERY_MAX_DELAY, within RESULT_TTL."""
        return cls(settings.redelivery_delay, settings.redelivery_max_delay, settings.result_ttl)

    def due(self, run: FlowRun, at: datetime) -> datetime | None:
        """When the run is to execute again, or None: given up."""
        doublings = min(max(run.run_count, 1) - 1, _MAX_DOUBLINGS)
        due = at + timedelta(seconds=min(self.delay * 2**doublings, self.max_delay))
        created = run.created or at
        return None if due - created > timedelta(seconds=self.within) else due


async def schedule_again(client: PrefectClient, flow_run_id: UUID, policy: Redelivery) -> bool:
    """Schedule the Undelivered run to deliver its outcome again; False when it was not
    Undelivered any more, or has been given up.

    Claimed first, as a worker claims a run (flows.claims): Prefect refuses Pending out
    of Pending and Running, so a run someone else has already scheduled again and a
    worker now executes is left alone; out of any ended state but Undelivered (a
    person's Retry that ended meanwhile) the run gets that state back."""
    claimed = await propose_pending(client, flow_run_id)
    if claimed is None:
        return False
    if from_schedule(claimed):
        # Scheduled again already (by another reaper): back to its schedule.
        at = claimed.state_details.scheduled_time
        await client.set_flow_run_state(flow_run_id, _again(at), force=True)
        return False
    before = ended_state(await states_of(client, flow_run_id))
    if before is None or before["name"] != UNDELIVERED:
        await restore(client, flow_run_id)
        return False
    run = await client.read_flow_run(flow_run_id)
    due = policy.due(run, now("UTC"))
    if due is None:
        message = f"{before['message']}; given up after RESULT_TTL ({policy.within:.0f} s)"
        await client.set_flow_run_state(flow_run_id, Failed(message=message), force=True)
        log.error("flow run %s: %s", flow_run_id, message)
        return False
    await client.set_flow_run_state(flow_run_id, _again(due), force=True)
    log.warning(
        "flow run %s: the engine has not taken its outcome; delivering it again at %s",
        flow_run_id,
        due.isoformat(timespec="seconds"),
    )
    return True


def _again(at: datetime | None) -> State[Any]:
    return rescheduled("delivering the outcome again", at)
