"""api.task_detail: stage times, attempts, outputs and errors from a flow run's task runs."""

from __future__ import annotations

import uuid

from prefect.client.schemas.objects import FlowRun, State
from prefect.states import Completed, Failed, Running

from api.task_detail import OUTPUTS, task_detail
from flows.stages import OUTPUTS as FLOW_OUTPUTS
from tests.unit.task_runs import task_run

FINISHED_RUN = [
    task_run("fetch", Completed(), 0.0, 0.042, run_count=2),
    task_run("process", Completed(), 0.05, 0.057),
    task_run("upload", Completed(message=OUTPUTS + "a.json, b.png"), 0.06, 0.072),
    task_run("notify", Completed(), 0.08, 0.083),
]


def run(state: State, run_count: int = 1) -> FlowRun:
    """A flow run as Prefect's API returns it, with its state's type and name filled in."""
    return FlowRun(
        flow_id=uuid.uuid4(),
        name="x",
        state=state,
        state_type=state.type,
        state_name=state.name,
        run_count=run_count,
    )


def test_stage_times_attempts_and_outputs_are_read() -> None:
    """Each stage's time and attempts (run_count), and the upload's keys, come from the
    task runs, in the order they started."""
    shown = task_detail(uuid.uuid4(), run(Completed()), FINISHED_RUN[::-1], None)
    assert list(shown.stages) == ["fetch", "process", "upload", "notify"]
    assert (shown.stages["fetch"].ms, shown.stages["fetch"].attempts) == (42, 2)
    assert (shown.stages["process"].ms, shown.stages["process"].attempts) == (7, 1)
    assert shown.data_out == ["a.json", "b.png"]
    assert shown.error_message is None


def test_the_outputs_prefix_equals_the_flows() -> None:
    """The API's copy of the upload message's prefix equals the flow's."""
    assert OUTPUTS == FLOW_OUTPUTS


def test_a_failure_gives_the_runs_message_and_no_time() -> None:
    """A failed stage has no time; the message is the failed flow run's, the engine's."""
    message = "input 'table' ('x.csv') not found in bucket 'b'"
    runs = [
        task_run("fetch", Failed(message="Task run encountered an exception"), 0.0, 0.01),
        task_run("notify", Completed(), 0.02, 0.03),
    ]
    shown = task_detail(uuid.uuid4(), run(Failed(message=message)), runs, None)
    assert shown.stages["fetch"].ms is None
    assert (shown.status, shown.error_message, shown.data_out) == ("error", message, [])


def test_a_rerun_shows_its_latest_execution_only() -> None:
    """The task runs of an earlier execution are left aside."""
    failed = [task_run("fetch", Failed(), -10.0, -9.0, execution=1)]
    rerun = [r.model_copy(update={"flow_run_run_count": 2}) for r in FINISHED_RUN]
    shown = task_detail(uuid.uuid4(), run(Completed(), run_count=2), failed + rerun, None)
    assert (shown.runs, shown.stages["fetch"].attempts) == (2, 2)
    assert shown.data_out == ["a.json", "b.png"]


def test_a_rerun_with_a_cached_upload_gives_the_keys_it_kept() -> None:
    """A rerun's Cached upload has no message: the keys are those of the upload, in an
    earlier execution of the run, that wrote them; a failed rerun's upload gives none."""
    first = [task_run("upload", Completed(message=OUTPUTS + "a.json"), 0.0, 0.1, execution=1)]
    cached: State[None] = Completed(name="Cached")
    rerun = [task_run("notify", Failed(), 5.0, 5.1, execution=2)]
    rerun.insert(0, task_run("upload", cached, 4.0, 4.0, execution=2))
    shown = task_detail(uuid.uuid4(), run(Completed(), run_count=2), first + rerun, None)
    assert shown.data_out == ["a.json"]
    failed = [task_run("upload", Failed(), 4.0, 4.1, execution=2)]
    shown = task_detail(uuid.uuid4(), run(Failed(), run_count=2), first + failed, None)
    assert shown.data_out == []


def test_a_finished_run_is_detailed() -> None:
    """Status, state, runs, stages, outputs and the page come together."""
    task_id = uuid.uuid4()
    flow_run = run(Completed())
    shown = task_detail(task_id, flow_run, FINISHED_RUN, "http://ui/runs/flow-run/1")
    assert shown.status == "finished"
    assert (shown.state, shown.runs, shown.flow_run_id) == ("Completed", 1, flow_run.id)
    assert shown.prefect_ui == "http://ui/runs/flow-run/1"


def test_a_crashed_run_gives_the_state_message() -> None:
    """A run that crashed says why in its state's message."""
    shown = task_detail(uuid.uuid4(), run(Failed(message="worker died")), [], None)
    assert (shown.status, shown.error_message) == ("error", "worker died")


def test_a_running_run_shows_its_stage() -> None:
    """While running, the status follows the stage whose task run runs."""
    runs = [*FINISHED_RUN[:2], task_run("upload", Running(), 0.06)]
    shown = task_detail(uuid.uuid4(), run(Running()), runs, None)
    assert shown.status == "saving"
    assert shown.stages["upload"].ms is None


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
