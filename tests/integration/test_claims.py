"""Transitions made from a stale listing of runs (a worker's claim, a reaper's taking back),
against the real Prefect server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import State, StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Crashed, Failed, Running, Scheduled
from prefect.types._datetime import now

from flows.claims import claim
from flows.reaper import MAX_EXECUTIONS, TAKEN_BACK, take_back
from tests.integration.conftest import (
    RunningStack,
    idle_worker,
    left_by_a_dead_worker,
    run_an_hour_ahead,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("ended", [Completed, Failed, Crashed])
def test_a_claim_listed_before_the_run_ended_elsewhere_is_refused_and_the_end_kept(
    stack: RunningStack, ended: Callable[..., State[Any]]
) -> None:
    """A run listed while Scheduled, then claimed, run and ended by another worker, is not
    run again by a claim from that listing: Prefect accepts the Pending, but the worker
    sees that the claim did not leave a scheduled state, does not execute the run, and
    writes back the state it had ended in, reason included."""

    async def scenario() -> tuple[list[State[Any]], int, int]:
        with temporary_settings({PREFECT_API_URL: stack.prefect_api}):
            async with get_client() as client:
                run = await run_an_hour_ahead(client)
                try:
                    listed = await client.read_flow_run(run.id)
                    # Elsewhere: claimed out of Scheduled, run, ended.
                    assert await claim(client, run.id) is not None
                    await client.set_flow_run_state(run.id, Running(), force=True)
                    end = ended(message="ended elsewhere")
                    await client.set_flow_run_state(run.id, end, force=True)
                    run_count = (await client.read_flow_run(run.id)).run_count
                    worker = await idle_worker(client, "stale-claimer")
                    # This worker's slot for the run, as its poll takes it from the listing.
                    worker._running[listed.id] = asyncio.current_task()  # type: ignore[assignment]
                    await worker._claim_and_execute(listed)
                    assert listed.id not in worker._running
                    after = await client.read_flow_run(run.id)
                    states = await client.read_flow_run_states(run.id)
                finally:
                    await client.delete_flow_run(run.id)
        return states, run_count, after.run_count

    states, run_count_before, run_count_after = asyncio.run(scenario())
    names = [state.name for state in states]
    expected = ended().name
    assert names[-3:] == [expected, "Pending", expected], names
    assert names.count("Running") == 1, names
    assert states[-1].message == "ended elsewhere"
    assert states[-1].type == states[-3].type != StateType.PENDING
    assert run_count_after == run_count_before


def test_a_claim_out_of_a_scheduled_state_is_granted(stack: RunningStack) -> None:
    """A claim of a run still scheduled moves it to Pending, the scheduled time kept."""

    async def scenario() -> State[Any] | None:
        with temporary_settings({PREFECT_API_URL: stack.prefect_api}):
            async with get_client() as client:
                run = await run_an_hour_ahead(client)
                try:
                    return await claim(client, run.id)
                finally:
                    await client.delete_flow_run(run.id)

    state = asyncio.run(scenario())
    assert state is not None
    assert state.is_pending()
    assert state.state_details.scheduled_time is not None


@pytest.mark.parametrize("given_up", [False, True])
def test_a_reaper_listing_made_before_the_run_ended_takes_nothing_back(
    stack: RunningStack, given_up: bool
) -> None:
    """A run the reaper listed while Running, whose worker then completed it: taking it
    back from that listing is refused by the server (Crashed is not accepted out of an
    ended state), so the run stays Completed, is not scheduled again, and the engine is
    told nothing, also when the run had used up its executions."""

    async def scenario() -> tuple[bool, list[State[Any]]]:
        with temporary_settings({PREFECT_API_URL: stack.prefect_api}):
            async with get_client() as client:
                run = await run_an_hour_ahead(client)
                try:
                    for _ in range(MAX_EXECUTIONS - 1 if given_up else 0):
                        # It lost its worker before, one time short of being given up.
                        await client.set_flow_run_state(run.id, Running(), force=True)
                        lost: State[Any] = Crashed(message=f"{TAKEN_BACK}(w) stopped answering")
                        await client.set_flow_run_state(run.id, lost, force=True)
                        again: State[Any] = Scheduled(
                            scheduled_time=now("UTC") + timedelta(hours=1)
                        )
                        await client.set_flow_run_state(run.id, again, force=True)
                    assert await claim(client, run.id) is not None
                    await client.set_flow_run_state(run.id, Running(), force=True)
                    listed = await client.read_flow_run(run.id)
                    await client.set_flow_run_state(run.id, Completed(), force=True)
                    taken = await take_back(client, listed)
                    states = await client.read_flow_run_states(run.id)
                finally:
                    await client.delete_flow_run(run.id)
        return taken, states

    taken, states = asyncio.run(scenario())
    assert not taken
    assert [state.name for state in states][-2:] == ["Running", "Completed"]


def test_a_run_a_reaper_left_half_taken_back_is_scheduled_again(stack: RunningStack) -> None:
    """A reaper marks a run Crashed to take it back, then dies before scheduling it again
    (a worker killed right after its restart): the suite's worker's sweep finds the run so
    left, once stale, and schedules it again; nothing else ever would."""
    half: State[Any] = Crashed(message=f"{TAKEN_BACK}(dead-worker) stopped answering")
    states = left_by_a_dead_worker(stack, half)
    names = [state.name for state in states]
    assert names.index("AwaitingRetry") > names.index("Crashed"), names
    again = next(state for state in states if state.name == "AwaitingRetry")
    assert "(dead-worker) stopped answering" in (again.message or "")
