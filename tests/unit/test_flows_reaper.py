"""flows.reaper: which runs lost their worker."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

from prefect.client.schemas.objects import FlowRun, State
from prefect.states import Crashed, Pending, Running
from prefect.types._datetime import now

from flows.reaper import (
    TAKEN_BACK,
    TOLD,
    left_by_predecessor,
    left_ended,
    left_half_taken,
    orphaned,
    owner_mark,
)


def _run(holder: str | None, state_age: float = 0.0, state: State[None] | None = None) -> FlowRun:
    state = state or Running()
    state.timestamp = now("UTC") - timedelta(seconds=state_age)
    return FlowRun(id=uuid4(), flow_id=uuid4(), infrastructure_pid=holder, state=state)


def test_run_of_a_live_worker_is_not_orphaned() -> None:
    """A run held by a worker that still heartbeats stays with it."""
    assert not orphaned(_run(owner_mark("w1")), {"w1"}, now("UTC"), 3)


def test_run_of_a_silent_worker_is_orphaned() -> None:
    """A run held by a worker missing from the live ones is orphaned."""
    assert orphaned(_run(owner_mark("w1")), {"w2"}, now("UTC"), 3)


def test_run_held_by_another_kind_of_worker_is_left_alone() -> None:
    """A stock Prefect worker's process id is not ours to judge."""
    assert not orphaned(_run("host:4242"), set(), now("UTC"), 3)


def test_claimed_run_without_holder_waits_before_it_is_orphaned() -> None:
    """A run claimed by a worker that died before saying so is orphaned once stale."""
    assert not orphaned(_run(None, state_age=1), set(), now("UTC"), 3)
    assert orphaned(_run(None, state_age=10), set(), now("UTC"), 3)


def test_run_without_state_is_orphaned() -> None:
    """A run with no state time cannot be waited for."""
    run = FlowRun(id=uuid4(), flow_id=uuid4(), state=Pending())
    run.state = None
    assert orphaned(run, set(), now("UTC"), 3)


def test_run_claimed_moments_ago_still_naming_a_dead_holder_waits() -> None:
    """A run given back and claimed again names its previous, dead holder until its new
    one starts it: it is not taken away from the new one until it is stale."""
    assert not orphaned(_run(owner_mark("dead"), 1, Pending()), {"w2"}, now("UTC"), 3)
    assert orphaned(_run(owner_mark("dead"), 10, Pending()), {"w2"}, now("UTC"), 3)
    assert orphaned(_run(owner_mark("dead"), 1, Running()), {"w2"}, now("UTC"), 3)


def test_run_left_by_an_earlier_process_of_the_same_name_is_taken_back() -> None:
    """A worker restarted in place under its old name takes back what its predecessor
    held (the name is live again, so no other reaper would), never what it runs itself."""
    started = now("UTC") - timedelta(seconds=5)
    assert left_by_predecessor(_run(owner_mark("w1"), state_age=60), "w1", started)
    assert not left_by_predecessor(_run(owner_mark("w1"), state_age=1), "w1", started)
    assert not left_by_predecessor(_run(owner_mark("w2"), state_age=60), "w1", started)
    assert not left_by_predecessor(_run(None, state_age=60), "w1", started)


def _pending(scheduled: bool, age: float) -> FlowRun:
    state: State[None] = Pending()
    if scheduled:
        # Prefect types the field with its own DateTime alias of datetime.
        state.state_details.scheduled_time = now("UTC")  # type: ignore[assignment]
    return _run(owner_mark("w1"), age, state)


def test_a_claim_that_found_the_run_ended_is_left_ended_once_stale() -> None:
    """A Pending made out of an ended state (no scheduled time on it) and not restored
    by its claimer for `stale_after` seconds is to be restored, not run."""
    assert not left_ended(_pending(scheduled=False, age=1), now("UTC"), 3)
    assert left_ended(_pending(scheduled=False, age=10), now("UTC"), 3)


def test_a_claim_out_of_a_schedule_or_a_running_run_is_not_left_ended() -> None:
    """Pending states made out of a scheduled state, and runs past Pending, are the
    orphan rules' to judge."""
    assert not left_ended(_pending(scheduled=True, age=10), now("UTC"), 3)
    assert not left_ended(_run(owner_mark("w1"), 10, Running()), now("UTC"), 3)


def test_a_run_left_half_taken_back_is_found_once_stale() -> None:
    """A run a reaper marked Crashed and did not schedule again (nor marked told) is found
    once stale; a fresh one, one marked told, or one crashed otherwise is not."""
    at = now("UTC")
    half = f"{TAKEN_BACK}(w1) stopped answering"
    assert left_half_taken(_run(None, 10, Crashed(message=half)), at, 3)
    assert not left_half_taken(_run(None, 1, Crashed(message=half)), at, 3)
    assert not left_half_taken(_run(None, 10, Crashed(message=half + TOLD)), at, 3)
    assert not left_half_taken(_run(None, 10, Crashed(message="Execution was cancelled")), at, 3)
    assert not left_half_taken(_run(None, 10, Running()), at, 3)
