"""What an operator sees: metrics, logs, progress updates and a task's detail.

The module has a stack of its own (table-summary, over the suite's Prefect server, S3
and stand-in engine) with JSON logs, progress updates and the worker's metrics port on,
so the figures it reads are those of the tasks it sends.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests import plain_http
from tests.conftest import S3_SECRET, WORKDIR, free_port
from tests.integration.conftest import SLOW_CALLBACK, Client, RunningStack, wait_for

pytestmark = pytest.mark.integration
SERVICE_MODULE = "services.table_summary"
WORKER_METRICS_PORT = free_port()
STACK_SETTINGS = {
    "LOG_FORMAT": "json",
    "PROGRESS_UPDATES": "true",
    "WORKER_METRICS_HOST": "127.0.0.1",
    "WORKER_METRICS_PORT": str(WORKER_METRICS_PORT),
}
STACK_LOG = "observability.log"
TABLE = b"name,score\nada,3\nbob,5\n"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample a Prometheus would read at `url`, by name and labels."""
    response = plain_http.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def worker_metrics() -> Samples:
    return scrape(f"http://127.0.0.1:{WORKER_METRICS_PORT}/metrics")


def missing_input(client: Client) -> str:
    """A task whose input key is not in S3: it fails in fetch, for good."""
    return client.submit([f"{uuid.uuid4()}.csv"])


def test_metrics_count_a_known_sequence(other_client: Client, other_service: RunningStack) -> None:
    """3 finished tasks, 1 whose input is missing, 1 malformed and 1 oversized request
    move the API's and the worker's counters, histograms and backlog by exactly that."""
    api = f"{other_service.api}/metrics"
    api_before, worker_before = scrape(api), worker_metrics()

    finished = [other_client.submit([other_client.put(TABLE, ".csv")]) for _ in range(3)]
    failed = missing_input(other_client)
    invalid = plain_http.post(f"{other_service.api}/compute", json={"task": {}}, timeout=10)
    assert invalid.status_code == 422
    too_large = plain_http.post(
        f"{other_service.api}/compute", content=b"x" * 1_100_000, timeout=10
    )
    assert too_large.status_code == 413
    for task_id in finished:
        assert other_client.engine.final(task_id, SLOW_CALLBACK)["status"] == "finished"
    assert other_client.engine.final(failed, SLOW_CALLBACK)["status"] == "error"

    def counted(name: str, **labels: str) -> float:
        return value(worker_metrics(), name, **labels) - value(worker_before, name, **labels)

    # The counters move just after the final callback: wait for the last of them.
    wait_for(lambda: counted("core_service_tasks_finished_total") == 3, 30, "3 finished")
    wait_for(
        lambda: counted("core_service_tasks_errored_total", stage="fetch", reason="permanent") == 1,
        30,
        "1 errored in fetch",
    )
    worker = worker_metrics()

    def delta(name: str, **labels: str) -> float:
        return value(worker, name, **labels) - value(worker_before, name, **labels)

    assert value(worker, "core_service_tasks_running") == 0
    assert delta("core_service_callback_attempts_total", kind="final") == 4
    # fetching, processing, saving for each finished task; fetching for the failed one.
    assert delta("core_service_callback_attempts_total", kind="progress") == 10
    assert delta("core_service_callback_failures_total", kind="final") == 0
    assert delta("core_service_callback_failures_total", kind="progress") == 0
    for stage, runs in (("fetch", 4), ("process", 3), ("upload", 3), ("notify", 4)):
        assert delta("core_service_stage_seconds_count", stage=stage) == runs, stage
        assert delta("core_service_stage_seconds_sum", stage=stage) > 0, stage
    assert delta("core_service_task_seconds_count", outcome="finished") == 3
    assert delta("core_service_task_seconds_count", outcome="error") == 1

    def api_delta(name: str, **labels: str) -> float:
        return value(scrape(api), name, **labels) - value(api_before, name, **labels)

    assert api_delta("core_service_tasks_accepted_total") == 4
    assert api_delta("core_service_tasks_rejected_total", reason="invalid") == 1
    assert api_delta("core_service_tasks_rejected_total", reason="too_large") == 1
    assert api_delta("core_service_tasks_rejected_total", reason="backlog_full") == 0
    assert api_delta("core_service_tasks_rejected_total", reason="host_not_allowed") == 0
    # The forwarder reads Prefect's backlog every second or so.
    wait_for(
        lambda: value(scrape(api), "core_service_backlog_tasks", where="prefect") == 0,
        30,
        "an empty backlog",
    )
    assert value(scrape(api), "core_service_backlog_tasks", where="journal") == 0
    assert S3_SECRET not in plain_http.get(api, timeout=10).text


def test_progress_updates_reach_the_engine_in_order(other_client: Client) -> None:
    """With PROGRESS_UPDATES the engine hears fetching, processing, saving, then the end;
    a task failing in fetch says fetching, then error."""
    done = other_client.submit([other_client.put(TABLE, ".csv")])
    failed = missing_input(other_client)
    other_client.engine.final(done, SLOW_CALLBACK)
    other_client.engine.final(failed, SLOW_CALLBACK)

    updates = other_client.engine.updates[done]
    assert [u["status"] for u in updates] == ["fetching", "processing", "saving", "finished"]
    assert all(u["data_out"] == [] for u in updates[:3])
    assert len(updates[-1]["data_out"]) == 1
    assert [u["status"] for u in other_client.engine.updates[failed]] == ["fetching", "error"]


def test_a_refused_progress_update_does_not_fail_the_task(other_client: Client) -> None:
    """A progress PATCH the engine answers 500 is counted as failed, not retried, and the
    task still runs to its `finished` callback."""
    failures = value(worker_metrics(), "core_service_callback_failures_total", kind="progress")
    task_id = str(uuid.uuid4())
    other_client.engine.answer(task_id, [500, 200])
    body = other_client.body([other_client.put(TABLE, ".csv")], task_id=task_id)
    response = plain_http.post(f"{other_client.stack.api}/compute", json=body, timeout=10)
    assert response.status_code == 200, response.text
    assert other_client.engine.final(task_id, SLOW_CALLBACK)["status"] == "finished"
    statuses = [u["status"] for u in other_client.engine.updates[task_id]]
    assert statuses == ["fetching", "processing", "saving", "finished"]
    after = value(worker_metrics(), "core_service_callback_failures_total", kind="progress")
    assert after == failures + 1


def test_log_lines_are_json_with_ids_and_one_summary(
    other_client: Client, other_service: RunningStack
) -> None:
    """Every line is one JSON object; those of a task's life carry its task and flow run
    ids; the task ends with one summary line, which the Prefect UI's log of the run shows."""
    task_id = other_client.submit([other_client.put(TABLE, ".csv")])
    other_client.engine.final(task_id, SLOW_CALLBACK)
    flow_run_id = other_client.flow_run_id(task_id)

    def summaries() -> list[dict[str, Any]]:
        lines = other_service.log_path.read_text().splitlines()
        entries = [json.loads(line) for line in lines]  # fails on any line that is not JSON
        mine = [entry for entry in entries if entry.get("task_id") == task_id]
        return [entry for entry in mine if entry["event"].startswith("summary:")]

    [summary] = wait_for(summaries, 30, "the summary line in the stack's log")
    assert summary["flow_run_id"] == flow_run_id
    assert summary["summary"]["outcome"] == "finished"
    assert set(summary["summary"]["stage_ms"]) == {"fetch", "process", "upload", "notify"}
    assert summary["summary"]["bytes_in"] == len(TABLE)
    assert summary["summary"]["files_out"] == 1
    assert 0 < summary["summary"]["run_ms"] <= summary["summary"]["since_handoff_ms"]

    entries = [json.loads(line) for line in other_service.log_path.read_text().splitlines()]
    mine = [entry for entry in entries if entry.get("task_id") == task_id]
    assert {entry["logger"].split(".")[0] for entry in mine} >= {"api", "prefect"}
    events = [entry["event"] for entry in mine]
    assert "accepted task" in events
    # A task run that completes logs nothing of its own (the run's graph shows it).
    assert not [entry for entry in mine if entry["logger"] == "prefect.task_runs"]
    assert all(entry["flow_run_id"] == flow_run_id for entry in mine if "flow_run_id" in entry)
    ran = [entry for entry in mine if entry["logger"].startswith("prefect")]
    assert ran
    assert all(entry["flow_run_id"] == flow_run_id for entry in ran)
    # Prefect's lines about the run name its deployment, `compute/<slug>`'s name.
    of_the_run = [entry for entry in ran if entry["logger"] == "prefect.flow_runs"]
    assert of_the_run
    assert {entry["deployment_name"] for entry in of_the_run} == {"table-summary"}
    assert (WORKDIR / STACK_LOG).read_bytes().count(S3_SECRET.encode()) == 0

    def in_prefect() -> list[str]:
        logs = plain_http.post(
            f"{other_service.prefect_api}/logs/filter",
            json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}},
            timeout=10,
        ).json()
        return [log["message"] for log in logs if log["message"].startswith("summary:")]

    [line] = wait_for(in_prefect, 30, "the summary line in Prefect's log of the run")
    assert line.startswith("summary: finished in ")


def test_task_detail_shows_stages_outputs_errors_and_the_ui_page(
    other_client: Client, other_service: RunningStack
) -> None:
    """GET /tasks/{id} gives status, stage times and attempts, outputs, the error message
    and the run's Prefect UI page; an unknown task is 404."""
    done = other_client.submit([other_client.put(TABLE, ".csv")])
    failed = missing_input(other_client)
    final = other_client.engine.final(done, SLOW_CALLBACK)
    error = other_client.engine.final(failed, SLOW_CALLBACK)

    def detail(task_id: str, stage: str) -> dict[str, Any] | None:
        """The detail once the run has ended and the end of the stage's task run is
        recorded (Prefect records task runs from their events, a moment later)."""
        response = plain_http.get(f"{other_service.api}/tasks/{task_id}", timeout=10)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        ended = found["status"] in ("finished", "error")
        recorded = found["stages"].get(stage, {}).get("ms") is not None
        # A finished task's outputs are read from the upload's state, recorded with it.
        outputs = found["status"] != "finished" or found["data_out"]
        return found if ended and recorded and outputs else None

    shown = wait_for(lambda: detail(done, "notify"), 30, "the detail of the finished task")
    assert shown["status"] == "finished"
    assert shown["state"] == "Completed"
    assert shown["runs"] == 1
    assert list(shown["stages"]) == ["fetch", "process", "upload", "notify"]
    assert all(stage["attempts"] == 1 for stage in shown["stages"].values())
    assert all(stage["ms"] is not None for stage in shown["stages"].values())
    assert shown["data_out"] == final["data_out"]
    assert shown["error_message"] is None
    flow_run_id = other_client.flow_run_id(done)
    assert shown["flow_run_id"] == flow_run_id
    ui = other_service.prefect_api.removesuffix("/api")
    assert shown["prefect_ui"] == f"{ui}/runs/flow-run/{flow_run_id}"

    shown = wait_for(lambda: detail(failed, "notify"), 30, "the detail of the failed task")
    assert shown["status"] == "error"
    assert shown["error_message"] == error["error_message"]
    assert shown["stages"]["fetch"]["ms"] is None
    assert shown["data_out"] == []

    unknown = uuid.uuid4()
    response = plain_http.get(f"{other_service.api}/tasks/{unknown}", timeout=10)
    assert response.status_code == 404
    assert response.json() == {"detail": f"Task {unknown} not found"}
