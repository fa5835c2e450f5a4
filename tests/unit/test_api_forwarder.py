"""The forwarder: journaled tasks handed to Prefect in batches, none dropped on a refusal."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import cast
from uuid import UUID, uuid4

import pytest

from api import forwarder as forwarder_module
from api.forwarder import BATCH, Forwarder
from api.intake import Intake
from api.orchestrator import Orchestrator
from core.runs import RunParameters
from core.settings import DEFAULT_RUN_RETENTION
from tests.unit.test_api_intake import _parameters, age
from tests.unit.test_api_registration import eventually


class Prefect:
    """Stands in for the orchestrator's bulk create: refuses the tasks it is told to."""

    def __init__(self, refuse: set[UUID]) -> None:
        self.refuse = refuse
        self.refusal = "Parameter validation failed"
        self.requests: list[int] = []
        self.submitted: list[UUID] = []

    async def backlog(self) -> int:
        return 0

    async def submit_all(self, batch: Sequence[RunParameters]) -> list[UUID | str]:
        self.requests.append(len(batch))
        self.submitted += [task.task_id for task in batch]
        return [self.refusal if task.task_id in self.refuse else uuid4() for task in batch]


def _forwarder(intake: Intake, prefect: Prefect) -> Forwarder:
    return Forwarder(intake, cast(Orchestrator, prefect), DEFAULT_RUN_RETENTION)


def test_a_backlog_is_handed_over_in_batches(tmp_path: Path) -> None:
    """More than a batch of journaled tasks takes one request per BATCH tasks."""
    intake = Intake(tmp_path / "intake.db")
    intake.add_all([_parameters() for _ in range(BATCH + 5)])
    prefect = Prefect(refuse=set())
    forwarder = _forwarder(intake, prefect)

    forwarded = [asyncio.run(forwarder.forward_once()) for _ in range(2)]

    assert forwarded == [BATCH, 5]
    assert prefect.requests == [BATCH, 5]
    assert intake.count() == 0


def test_a_task_older_than_the_retention_is_not_forwarded(tmp_path: Path) -> None:
    """A task journaled longer than RUN_RETENTION ago is left to the expiry (its error
    callback), never handed to Prefect; a recent one is."""
    path = tmp_path / "intake.db"
    intake = Intake(path)
    old, recent = _parameters(), _parameters()
    intake.add_all([old, recent])
    age(path, old.task_id, DEFAULT_RUN_RETENTION + 1)
    prefect = Prefect(refuse=set())

    assert asyncio.run(_forwarder(intake, prefect).forward_once()) == 1
    assert prefect.submitted == [recent.task_id]
    assert [intake.contains(task.task_id) for task in (old, recent)] == [True, False]


def test_a_refused_task_stays_in_the_journal(tmp_path: Path) -> None:
    """A task whose run Prefect refuses is kept to be tried again; the others leave."""
    intake = Intake(tmp_path / "intake.db")
    tasks = [_parameters() for _ in range(3)]
    intake.add_all(tasks)
    forwarder = _forwarder(intake, Prefect(refuse={tasks[1].task_id}))

    assert asyncio.run(forwarder.forward_once()) == 2
    assert [intake.contains(task.task_id) for task in tasks] == [False, True, False]


def test_a_busy_database_is_one_warning_for_the_batch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Runs refused only because Prefect's SQLite stayed busy stay in the journal, and the
    operator reads one warning with their number, not an error per task."""
    intake = Intake(tmp_path / "intake.db")
    tasks = [_parameters() for _ in range(4)]
    intake.add_all(tasks)
    prefect = Prefect(refuse={task.task_id for task in tasks[:3]})
    prefect.refusal = "(sqlite3.OperationalError) database is locked"
    forwarder = _forwarder(intake, prefect)

    with caplog.at_level("INFO", logger="api.forwarder"):
        assert asyncio.run(forwarder.forward_once()) == 1

    assert [intake.contains(task.task_id) for task in tasks] == [True, True, True, False]
    assert [r.levelname for r in caplog.records if r.levelname != "INFO"] == ["WARNING"]
    assert "busy for 3 task(s)" in caplog.records[-1].getMessage()


def test_a_refusal_names_its_task_in_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    intake = Intake(tmp_path / "intake.db")
    task = _parameters()
    intake.add_all([task])
    forwarder = _forwarder(intake, Prefect(refuse={task.task_id}))

    with caplog.at_level("INFO", logger="api.forwarder"):
        assert asyncio.run(forwarder.forward_once()) == 0

    (record,) = caplog.records
    assert record.levelname == "ERROR"
    assert "Parameter validation failed" in record.getMessage()
    assert record.__dict__["task_id"] == str(task.task_id)


def test_forwarding_waits_for_the_requests_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a /compute is in flight the forwarder holds back; once it is answered, the
    journaled task is handed over."""
    monkeypatch.setattr(forwarder_module, "SETTLE_SECONDS", 60.0)
    intake = Intake(tmp_path / "intake.db")
    prefect = Prefect(refuse=set())
    forwarder = _forwarder(intake, prefect)

    async def scenario() -> None:
        running = asyncio.create_task(forwarder.run())
        with forwarder.accepting():
            waiter = asyncio.create_task(forwarder.settled())
            intake.add_all([_parameters()])
            forwarder.wake()
            for _ in range(20):
                await asyncio.sleep(0)
            assert not waiter.done()
        await eventually(lambda: prefect.requests == [1], "the task handed over")
        await asyncio.wait_for(waiter, 5)
        # The entry leaves the journal once Prefect has answered, in a thread of its own.
        await eventually(lambda: intake.count() == 0, "the journal emptied")
        running.cancel()

    asyncio.run(scenario())


def test_a_steady_stream_of_requests_holds_forwarding_back_only_so_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests in flight all the time delay the forwarding by SETTLE_SECONDS at most."""
    monkeypatch.setattr(forwarder_module, "SETTLE_SECONDS", 0.05)
    intake = Intake(tmp_path / "intake.db")
    prefect = Prefect(refuse=set())
    forwarder = _forwarder(intake, prefect)

    async def scenario() -> None:
        with forwarder.accepting():
            intake.add_all([_parameters()])
            running = asyncio.create_task(forwarder.run())
            await eventually(lambda: prefect.requests == [1], "the task handed over")
        running.cancel()

    asyncio.run(scenario())
