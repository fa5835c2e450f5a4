"""Nothing of a task is kept past RUN_RETENTION: Prefect's vacuum, as the launcher switches
it on, deletes the runs that ended before it; a journaled task Prefect never took within
it ends with an error callback and leaves the journal."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prefect.client.orchestration import PrefectClient

from api.expiry import expire, expired_update
from api.forwarder import Forwarder
from api.intake import Intake
from api.orchestrator import Orchestrator
from core.runs import RunParameters, S3Target
from core.settings import DEFAULT_RUN_RETENTION
from deployments.local import Stack, environment
from tests.conftest import WORKDIR, free_port
from tests.integration.conftest import SLUG, Engine, start_suite_prefect_server, wait_for
from tests.unit.test_api_intake import age
from tests.unit.test_api_registration import eventually

pytestmark = pytest.mark.integration

# The shortest retention Prefect's vacuum takes: a run ended two hours ago is past it.
SHORT_RETENTION = 3601


@dataclass
class VacuumingServer:
    api: str
    database: Path


@pytest.fixture(scope="module")
def vacuuming_server() -> Iterator[VacuumingServer]:
    """A Prefect server of this module's own, started like every other one, with
    RUN_RETENTION at its shortest and the vacuum passing every second."""
    home = WORKDIR / "prefect-retention"
    env = environment(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
            "RUN_RETENTION": str(SHORT_RETENTION),
            "PREFECT_SERVER_SERVICES_DB_VACUUM_LOOP_SECONDS": "1",
        }
    )
    with (WORKDIR / "retention.log").open("ab") as log:
        stack = Stack(env, log=log)
        try:
            start_suite_prefect_server(stack)
            yield VacuumingServer(env["PREFECT_API_URL"], home / "prefect.db")
        finally:
            stack.stop()


@dataclass
class Traces:
    """A flow run ended at once, with a task run and a log line of its own."""

    flow_run: str
    task_run: str


def ended_run(http: httpx.Client, flow_id: str) -> Traces:
    flow_run = http.post(
        "/flow_runs/",
        json={"flow_id": flow_id, "name": str(uuid.uuid4()), "state": {"type": "COMPLETED"}},
    )
    flow_run.raise_for_status()
    assert flow_run.json()["end_time"] is not None
    run_id = flow_run.json()["id"]
    task_run = http.post(
        "/task_runs/",
        json={"flow_run_id": run_id, "name": "process", "task_key": "process", "dynamic_key": "0"},
    )
    task_run.raise_for_status()
    line = {"name": "retention", "level": 20, "message": "a stage ran", "flow_run_id": run_id}
    logged = http.post("/logs/", json=[line | {"timestamp": datetime.now(UTC).isoformat()}])
    logged.raise_for_status()
    return Traces(run_id, task_run.json()["id"])


def end_earlier(database: Path, flow_run_id: str, by: timedelta) -> None:
    """Move the run's end back by `by` in the server's database. Prefect's API stamps every
    state with the server's clock, so a run that ended hours ago cannot be made through it;
    the vacuum reads only `end_time`. (SQLite holds it as naive UTC text.)"""
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db, db:
        [(end,)] = db.execute(
            "SELECT end_time FROM flow_run WHERE id = ?", (flow_run_id,)
        ).fetchall()
        earlier = datetime.fromisoformat(end) - by
        db.execute(
            "UPDATE flow_run SET end_time = ? WHERE id = ?",
            (earlier.isoformat(" ", "microseconds"), flow_run_id),
        )


def traces_left(http: httpx.Client, traces: Traces) -> tuple[int, int, int]:
    """How Prefect answers for the flow run and its task run, and its log lines' number."""
    logs = http.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [traces.flow_run]}}})
    logs.raise_for_status()
    return (
        http.get(f"/flow_runs/{traces.flow_run}").status_code,
        http.get(f"/task_runs/{traces.task_run}").status_code,
        len(logs.json()),
    )


def test_the_vacuum_deletes_runs_ended_before_the_retention_and_keeps_the_others(
    vacuuming_server: VacuumingServer,
) -> None:
    """A run that ended two hours ago goes, with its task run and its logs, under a
    RUN_RETENTION of an hour; a run that ended now stays."""
    with httpx.Client(base_url=vacuuming_server.api, timeout=30) as http:
        flow = http.post("/flows/", json={"name": "retention"})
        flow.raise_for_status()
        old, recent = (ended_run(http, flow.json()["id"]) for _ in range(2))
        all_there, gone = (200, 200, 1), (404, 404, 0)
        assert traces_left(http, old) == all_there
        end_earlier(vacuuming_server.database, old.flow_run, timedelta(hours=2))

        wait_for(lambda: traces_left(http, old) == gone, 120, "the old run to be vacuumed")
        assert traces_left(http, recent) == all_there


def _task(engine: Engine) -> RunParameters:
    task_id = uuid.uuid4()
    s3 = S3Target(host="http://s3", region="r", bucket="b", sealed_credentials="token")
    callback = engine.callback_url(str(task_id))
    return RunParameters(task_id=task_id, data_in=["a.png"], s3=s3, callback_url=callback)


def journal(path: Path, engine: Engine, ages: list[float]) -> tuple[Intake, list[RunParameters]]:
    """A journal holding a task of each age, in seconds."""
    intake = Intake(path)
    tasks = [_task(engine) for _ in ages]
    intake.add_all(tasks)
    for task, seconds in zip(tasks, ages, strict=True):
        age(path, task.task_id, seconds)
    return intake, tasks


def test_a_task_prefect_never_took_ends_with_an_error_callback(
    engine: Engine, tmp_path: Path
) -> None:
    """A task journaled longer than RUN_RETENTION ago gets an `error` callback saying why
    and leaves the journal; a recent one stays, and the engine hears nothing of it."""
    intake, (old, recent) = journal(tmp_path / "intake.db", engine, [DEFAULT_RUN_RETENTION + 1, 60])
    for task in (old, recent):
        engine.accept(str(task.task_id))

    assert asyncio.run(expire(intake, DEFAULT_RUN_RETENTION, time.time())) == 1

    assert engine.delivered[str(old.task_id)] == [
        {
            "status": "error",
            "data_out": [],
            "error_message": "the task was not handed to Prefect within RUN_RETENTION "
            "(604800 s) and was not run",
        }
    ]
    assert str(recent.task_id) not in engine.updates
    assert [intake.contains(task.task_id) for task in (old, recent)] == [False, True]


def test_an_engine_that_does_not_take_the_callback_is_told_at_a_later_pass(
    engine: Engine, tmp_path: Path
) -> None:
    """An engine answering 503 leaves the task in the journal, and the next pass tells it
    again; one refusing with 404 would refuse again, so the task leaves at once."""
    intake, (busy, refusing) = journal(tmp_path / "intake.db", engine, [10 * 3600] * 2)
    engine.answer(str(busy.task_id), [503, 200])
    engine.answer(str(refusing.task_id), [404])

    def one_pass() -> int:
        return asyncio.run(expire(intake, 3600 * 2, time.time()))

    assert one_pass() == 1
    assert [intake.contains(task.task_id) for task in (busy, refusing)] == [True, False]
    assert one_pass() == 1
    assert not intake.contains(busy.task_id)
    expected = expired_update(3600 * 2).model_dump(mode="json")
    assert engine.updates[str(busy.task_id)] == [expected, expected]
    assert engine.updates[str(refusing.task_id)] == [expected]


def test_the_forwarder_ends_old_tasks_while_prefect_is_unreachable(
    engine: Engine, tmp_path: Path
) -> None:
    """The API's forwarder, Prefect unreachable all along, ends a task journaled longer
    than RUN_RETENTION ago with its error callback; a recent one waits in the journal."""
    intake, (old, recent) = journal(tmp_path / "intake.db", engine, [DEFAULT_RUN_RETENTION + 1, 60])
    for task in (old, recent):
        engine.accept(str(task.task_id))

    async def forward_until_the_old_task_left() -> None:
        async with PrefectClient(f"http://127.0.0.1:{free_port()}/api") as client:
            forwarder = Forwarder(intake, Orchestrator(client, SLUG), DEFAULT_RUN_RETENTION)
            running = asyncio.create_task(forwarder.run())
            try:
                await eventually(lambda: not intake.contains(old.task_id), "the old task", 60)
            finally:
                running.cancel()

    asyncio.run(forward_until_the_old_task_left())
    assert engine.final(str(old.task_id))["status"] == "error"
    assert intake.contains(recent.task_id)
    assert str(recent.task_id) not in engine.updates
