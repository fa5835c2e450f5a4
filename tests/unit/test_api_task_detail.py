"""api.task_detail: reading a run's log back into stage times, attempts, outputs, errors."""

from __future__ import annotations

import uuid

from prefect.client.schemas.objects import FlowRun, State
from prefect.states import Completed, Failed, Running

from api.task_detail import read_run_log, task_detail
from flows.compute import ATTEMPT_FAILED, DONE, FAILED, STARTED


def lines(*records: tuple[str, tuple[object, ...]]) -> list[str]:
    """Lines formatted exactly as the flow formats them."""
    return [template % args for template, args in records]


FINISHED_RUN = lines(
    (STARTED, ("fetch",)),
    (ATTEMPT_FAILED, ("fetch", 1, 6, "S3 answered 503 for input", 0.2)),
    (DONE, ("fetch", "1 input(s), 20 bytes", 41.6)),
    (STARTED, ("process",)),
    (DONE, ("process", "1 output(s), 99 bytes", 7.0)),
    (STARTED, ("upload",)),
    (DONE, ("upload", "a.json, b.png", 12.0)),
    (STARTED, ("notify",)),
    (DONE, ("notify", "told the engine: finished", 3.0)),
    ("summary: finished in 80 ms (fetch 42 ms, ...); in: 1 file(s), 20 bytes", ()),
)


def test_stage_times_attempts_and_outputs_are_read() -> None:
    """Each stage's time and attempts, and the upload's keys, come from the flow's lines."""
    read = read_run_log(["Beginning flow run", *FINISHED_RUN, "Finished in state Completed()"])
    assert list(read.stages) == ["fetch", "process", "upload", "notify"]
    assert (read.stages["fetch"].ms, read.stages["fetch"].attempts) == (42, 2)
    assert (read.stages["process"].ms, read.stages["process"].attempts) == (7, 1)
    assert read.data_out == ["a.json", "b.png"]
    assert read.error_message is None
    assert read.stage == "notify"


def test_a_failure_gives_its_message_and_no_time() -> None:
    """A failed stage has no time; its message is the one the engine got."""
    read = read_run_log(
        lines(
            (STARTED, ("fetch",)),
            (FAILED, ("fetch", "input 'table' ('x.csv') not found in bucket 'b'")),
            (STARTED, ("notify",)),
        )
    )
    assert read.stages["fetch"].ms is None
    assert read.error_message == "input 'table' ('x.csv') not found in bucket 'b'"
    assert read.data_out == []


def test_a_rerun_shows_its_latest_execution_only() -> None:
    """A second `fetch: started` starts afresh: the detail is of the latest execution."""
    failed = lines((STARTED, ("fetch",)), (FAILED, ("fetch", "missing")))
    read = read_run_log(failed + FINISHED_RUN)
    assert read.error_message is None
    assert read.stages["fetch"].attempts == 2
    assert read.data_out == ["a.json", "b.png"]


def run(state: State) -> FlowRun:
    """A flow run as Prefect's API returns it, with its state's type and name filled in."""
    return FlowRun(
        flow_id=uuid.uuid4(),
        name="x",
        state=state,
        state_type=state.type,
        state_name=state.name,
        run_count=1,
    )


def test_a_finished_run_is_detailed() -> None:
    """Status, state, runs, stages, outputs and the page come together."""
    task_id = uuid.uuid4()
    flow_run = run(Completed())
    shown = task_detail(task_id, flow_run, FINISHED_RUN, "http://ui/runs/flow-run/1")
    assert shown.status == "finished"
    assert (shown.state, shown.runs, shown.flow_run_id) == ("Completed", 1, flow_run.id)
    assert shown.data_out == ["a.json", "b.png"]
    assert shown.prefect_ui == "http://ui/runs/flow-run/1"


def test_a_crashed_run_without_a_failure_line_gives_the_state_message() -> None:
    """When the flow could not log why, the state's message says it."""
    shown = task_detail(uuid.uuid4(), run(Failed(message="worker died")), [], None)
    assert (shown.status, shown.error_message) == ("error", "worker died")


def test_a_running_run_shows_its_stage() -> None:
    """While running, the status follows the last stage started."""
    shown = task_detail(uuid.uuid4(), run(Running()), FINISHED_RUN[:6], None)
    assert shown.status == "saving"


def test_a_journaled_task_is_pending_without_a_run() -> None:
    """A task still in the journal has no run yet."""
    task_id = uuid.uuid4()
    shown = task_detail(task_id, None, [], None)
    assert (shown.task_id, shown.status, shown.flow_run_id, shown.runs) == (
        task_id,
        "pending",
        None,
        0,
    )
