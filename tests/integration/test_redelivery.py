"""An outcome the engine has not taken within the callback's retries is delivered again,
by a later execution of its run, once the engine is back (flows.redelivery).

Each test runs its task on an extra worker whose callback retries run out at once and
whose redelivery comes a second later, while the engine answers 503 until the run has
ended Undelivered.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flows.redelivery import UNDELIVERED, undelivered
from flows.results import RESCHEDULED
from tests import plain_http
from tests.integration.conftest import (
    Client,
    RunningStack,
    image_bytes,
    left_by_a_dead_worker,
    only_an_extra_worker,
    task_runs,
    wait_for,
)

pytestmark = pytest.mark.integration
# Retries that run out at once, and a redelivery a second later, doubling up to two.
QUICK = {"CALLBACK_RETRIES": "1", "REDELIVERY_DELAY": "1", "REDELIVERY_MAX_DELAY": "2"}


def states_of(client: Client, task_id: str) -> list[dict[str, Any]]:
    """The states of the task's flow run, oldest first (none before it is created)."""
    run = client.find_flow_run(task_id)
    if run is None:
        return []
    states: list[dict[str, Any]] = plain_http.get(
        f"{client.stack.prefect_api}/flow_run_states/",
        params={"flow_run_id": run["id"]},
        timeout=10,
    ).json()
    return sorted(states, key=lambda state: state["timestamp"])


def undelivered_then_taken(client: Client, data_in: list[str]) -> tuple[str, list[str]]:
    """Submit a task while the engine answers 503; once its run has ended Undelivered
    and been scheduled again, the engine takes callbacks. The task's id, and the names
    of its run's states once it has ended for good."""
    back = threading.Event()
    body = client.body(data_in)
    task_id: str = body["task"]["id"]
    client.engine.answer_by(task_id, lambda: 200 if back.is_set() else 503)
    with only_an_extra_worker(client, **QUICK):
        assert (
            plain_http.post(f"{client.stack.api}/compute", json=body, timeout=10).status_code == 200
        )

        def scheduled_again() -> bool:
            names = [state["name"] for state in states_of(client, task_id)]
            return UNDELIVERED in names and "AwaitingRetry" in names[names.index(UNDELIVERED) :]

        wait_for(scheduled_again, 120, "the run to end Undelivered and be scheduled again")
        back.set()
        client.engine.final(task_id, timeout=120)

        def ended() -> list[str] | None:
            states = states_of(client, task_id)
            last = states[-1]
            done = last["type"] in ("COMPLETED", "FAILED") and last["name"] != UNDELIVERED
            return [state["name"] for state in states] if done else None

        names = wait_for(ended, 60, "the run to end once delivered")
    return task_id, names


def test_a_finished_outcome_the_engine_missed_is_delivered_when_it_is_back(
    client: Client,
) -> None:
    """The engine answers 503 past the callback's retries: the run ends Undelivered (its
    worker's slot freed), is scheduled again as the service's own reschedule, and its next
    execution, finding process and upload Cached, delivers `finished` with the outputs of
    the first: one `finished` taken, its outputs in S3, and the run Completed."""
    data_in = [client.put(image_bytes("PNG", (48, 20)), ".png"), client.put(b"90", ".txt")]

    task_id, names = undelivered_then_taken(client, data_in)

    delivered = client.engine.delivered[task_id]
    assert [update["status"] for update in delivered] == ["finished"]
    assert all(client.get(key) for key in delivered[0]["data_out"])
    assert names[-1] == "Completed", names
    # Every PATCH before the engine came back was the same `finished`, refused.
    assert {update["status"] for update in client.engine.updates[task_id]} == {"finished"}
    states = states_of(client, task_id)
    again = next(s for s in states if s["name"] == "AwaitingRetry" and s["message"])
    assert again["message"].endswith(RESCHEDULED), again

    def delivering_execution() -> dict[str, str] | None:
        """The stages of the execution whose notify the engine took, once Prefect has
        recorded them (from events, a moment after the run ends)."""
        runs = task_runs(client, task_id)
        delivered = [r for r in runs if r["name"] == "notify" and r["state_name"] == "Completed"]
        if not delivered:
            return None
        execution = delivered[0]["flow_run_run_count"]
        stages = {r["name"]: r["state_name"] for r in runs if r["flow_run_run_count"] == execution}
        return stages if len(stages) == 4 else None

    last_execution = wait_for(delivering_execution, 60, "the delivering execution's task runs")
    assert last_execution["process"] == "Cached", last_execution
    assert last_execution["upload"] == "Cached", last_execution


def test_an_error_outcome_the_engine_missed_is_delivered_when_it_is_back(
    client: Client,
) -> None:
    """A task that cannot be done (its input is missing) while the engine answers 503:
    its `error`, with the reason, reaches the engine once it is back, and only once."""
    missing = "f0e1d2c3-0000-4000-8000-000000000000.png"
    data_in = [missing, client.put(b"90", ".txt")]

    task_id, names = undelivered_then_taken(client, data_in)

    delivered = client.engine.delivered[task_id]
    assert [update["status"] for update in delivered] == ["error"]
    assert missing in delivered[0]["error_message"]
    assert names[-1] == "Failed", names
    assert "data_out" not in delivered[0] or not delivered[0]["data_out"]


def test_a_run_left_undelivered_by_a_dead_worker_is_scheduled_again(
    stack: RunningStack,
) -> None:
    """A worker dies between its run's end as Undelivered and scheduling it again: the
    suite's worker's sweep finds the run so left, once stale, and schedules it again, due
    later, as the service's own reschedule; nothing else ever would."""
    states = left_by_a_dead_worker(stack, undelivered("finished", "engine unreachable"))
    names = [state.name for state in states]
    assert names[-3:] == [UNDELIVERED, "Pending", "AwaitingRetry"], names
    again = states[-1]
    assert (again.message or "").endswith(RESCHEDULED)
    assert again.state_details.scheduled_time is not None
    assert again.state_details.scheduled_time > states[-3].timestamp
