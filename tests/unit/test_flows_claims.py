"""flows.claims: what a claim is judged by, and what a refused one gives back."""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import State
from prefect.states import Completed, Pending, Scheduled

from flows.claims import ended_state, from_schedule


def _state(kind: str, name: str, at: str) -> dict[str, Any]:
    return {"type": kind, "name": name, "timestamp": f"2026-12-06T00:01:{at}Z"}


def test_a_pending_state_with_a_scheduled_time_came_from_a_schedule() -> None:
    """Prefect copies the scheduled time onto the Pending it makes out of a scheduled
    state; a Pending without one, or any other state, is not a claim from a schedule."""
    claimed: State[None] = Pending()
    claimed.state_details.scheduled_time = Scheduled().state_details.scheduled_time
    assert from_schedule(claimed)
    assert not from_schedule(Pending())
    assert not from_schedule(Completed())


def test_the_state_restored_is_the_latest_ended_one_whatever_the_claims_stamp() -> None:
    """A claim stamped before the end it waited behind (the server stamps a state as its
    request arrives) still gives back that end, not the Running before it."""
    states = [
        _state("SCHEDULED", "Scheduled", "10"),
        _state("PENDING", "Pending", "11"),
        _state("RUNNING", "Running", "12"),
        _state("PENDING", "Pending", "40.5"),
        _state("COMPLETED", "Completed", "40.9"),
    ]
    assert ended_state(states) == states[-1]


def test_after_a_rerun_the_state_restored_is_the_reruns_end() -> None:
    """Of several ends (a run retried from the UI), the latest is the one to give back;
    fractions of a second and whole seconds compare as times."""
    first_end = _state("COMPLETED", "Completed", "10.5")
    rerun_end = _state("FAILED", "Failed", "20")
    states = [first_end, _state("SCHEDULED", "AwaitingRetry", "15"), rerun_end]
    assert ended_state(states) == rerun_end
    assert ended_state([_state("RUNNING", "Running", "01")]) is None
