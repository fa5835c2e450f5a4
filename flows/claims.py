"""Claiming a flow run to execute it: only out of a scheduled state, never out of an ended one.

A worker claims a run by proposing Pending, which only one claimant gets (Prefect's
`PreventPendingTransitions` refuses Pending from Pending, Running, Cancelling and
Cancelled). But Prefect also accepts Pending from Completed when the run's result is not
persisted, and from Failed and Crashed: it reads that as a rerun. A claim made from a
listing of due runs that is older than a run's whole life (about 100 ms here) would then
execute the task again, and the engine would hear a second outcome.

Whether a claim moved the run out of a scheduled state is in the server's answer to the
claim itself. Prefect's rule `CopyScheduledTime` writes the scheduled time of the state it
leaves onto the new Pending state, in the same row-locked transaction as the transition,
and only when that state is SCHEDULED-type (Scheduled, AwaitingRetry, Late: the server
gives each a scheduled time); the claim proposes none. So a Pending state without one
was made from an ended state: the run is not executed, and the state it had is written
back (`restore`). That closes the race rather than narrowing it: the check is on the
transition the server made, not on a listing made before it, however old.

Until it is restored the run stays Pending; if the worker dies in between, any worker's
reaper restores it (flows.reaper), never reschedules it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import State
from prefect.exceptions import Abort
from prefect.states import Pending
from prefect.utilities.engine import propose_state

log = logging.getLogger(__name__)


def from_schedule(state: State[Any]) -> bool:
    """Whether a Pending state was made out of a scheduled state (see the module)."""
    return state.is_pending() and state.state_details.scheduled_time is not None


async def propose_pending(client: PrefectClient, flow_run_id: UUID) -> State[Any] | None:
    """Propose Pending; the run's Pending state, or None when Prefect refused it (the run
    Pending, Running, Cancelling or Cancelled: another holds it)."""
    try:
        state = await propose_state(client, Pending(), flow_run_id=flow_run_id)
    except Abort:
        return None
    return state if state.is_pending() else None


async def states_of(client: PrefectClient, flow_run_id: UUID) -> list[dict[str, Any]]:
    """The run's states as Prefect's API gives them (copied as they are by `restore`)."""
    response = await client.request(
        "GET", "/flow_run_states/", params={"flow_run_id": str(flow_run_id)}
    )
    states: list[dict[str, Any]] = response.json()
    return states


async def claim(client: PrefectClient, flow_run_id: UUID) -> State[Any] | None:
    """Move the run out of its scheduled state to Pending; its Pending state, or None when
    it is another's (claimed first, running) or has ended meanwhile (then restored)."""
    state = await propose_pending(client, flow_run_id)
    if state is None:
        return None
    if not from_schedule(state):
        log.warning("flow run %s had ended before this claim; not run again", flow_run_id)
        await restore(client, flow_run_id)
        return None
    return state


# What a claim can find a run in, other than a scheduled state: Prefect refuses Pending
# out of Pending, Running, Cancelling and Cancelled.
_ENDED = ("COMPLETED", "FAILED", "CRASHED")


def ended_state(states: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The state a refused claim moved the run out of: its latest ended state. Not the
    one before the claim's by timestamp: the server stamps a state as the request for it
    arrives, so a claim that waited for the run's row behind the end can be stamped before it."""
    ended = [state for state in states if state["type"] in _ENDED]
    return max(ended, key=lambda state: datetime.fromisoformat(state["timestamp"]), default=None)


async def restore(client: PrefectClient, flow_run_id: UUID) -> None:
    """Write back the ended state a refused claim moved the run out of: a copy of it, with
    its type, name, message and result."""
    before = ended_state(await states_of(client, flow_run_id))
    if before is None:
        log.error("flow run %s: no ended state to restore", flow_run_id)
        return
    details = {k: v for k, v in before["state_details"].items() if k != "transition_id"}
    copy = {key: before[key] for key in ("type", "name", "message", "data")}
    await client.request(
        "POST",
        "/flow_runs/{id}/set_state",
        path_params={"id": flow_run_id},
        json={"state": {**copy, "state_details": details}, "force": True},
    )
    log.info("flow run %s restored to %s", flow_run_id, before["name"])
