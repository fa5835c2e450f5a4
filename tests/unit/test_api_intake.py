"""The journal `/compute` writes to before answering, and its group commit."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from api.intake import Entry, GroupCommit, Intake
from core.runs import RunParameters, S3Target


def _parameters() -> RunParameters:
    s3 = S3Target(host="http://s3", region="r", bucket="b", sealed_credentials="token")
    return RunParameters(task_id=uuid4(), data_in=["a.png"], s3=s3, callback_url="http://e/cb")


def age(path: Path, task_id: UUID, seconds: float) -> None:
    """Make a journaled task `seconds` older, as if journaled that long before (through a
    connection of its own, as another process would)."""
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "UPDATE intake SET accepted_at = accepted_at - ? WHERE task_id = ?",
            (seconds, str(task_id)),
        )


class CountingIntake(Intake):
    """The real journal, noting the size of each transaction."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []

    def add_all(self, batch: list[RunParameters]) -> list[bool]:
        self.batches.append(len(batch))
        return super().add_all(batch)


def test_a_burst_is_journaled_in_few_transactions(tmp_path: Path) -> None:
    """50 tasks added at once are all journaled, in fewer transactions than tasks."""
    intake = CountingIntake(tmp_path / "intake.db")
    tasks = [_parameters() for _ in range(50)]

    async def burst() -> list[bool]:
        journal = GroupCommit(intake)
        return await asyncio.gather(*(journal.add(task) for task in tasks))

    assert asyncio.run(burst()) == [True] * 50
    assert all(intake.contains(task.task_id) for task in tasks)
    assert sum(intake.batches) == 50
    assert len(intake.batches) < 50


def test_the_same_task_twice_is_journaled_once(tmp_path: Path) -> None:
    """The second add of a task id, in the same batch or a later one, says False."""
    intake = Intake(tmp_path / "intake.db")
    task = _parameters()

    async def twice() -> list[bool]:
        journal = GroupCommit(intake)
        together = await asyncio.gather(journal.add(task), journal.add(task))
        return [*together, await journal.add(task)]

    assert asyncio.run(twice()) == [True, False, False]
    assert intake.count() == 1


def test_a_failed_write_fails_every_waiting_request(tmp_path: Path) -> None:
    """When the journal cannot be written, each request of the batch gets the error
    (and so a 500, never a 200 for a task that is not on disk)."""
    intake = Intake(tmp_path / "intake.db")
    intake.close()

    async def burst() -> list[BaseException | bool]:
        journal = GroupCommit(intake)
        return await asyncio.gather(
            *(journal.add(_parameters()) for _ in range(3)), return_exceptions=True
        )

    results = asyncio.run(burst())
    assert len(results) == 3
    assert all(isinstance(result, sqlite3.ProgrammingError) for result in results)


def test_a_journaled_task_survives_reopening(tmp_path: Path) -> None:
    """A task added and committed is there for the next process that opens the file."""
    path = tmp_path / "intake.db"
    task = _parameters()
    first = Intake(path)
    assert first.add_all([task]) == [True]
    first.close()

    entries = Intake(path).oldest(10)

    assert [entry.task_id for entry in entries] == [task.task_id]
    assert entries[0].parameters == task


def test_a_failed_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    """A batch that fails midway is rolled back as a whole."""
    intake = Intake(tmp_path / "intake.db")

    class Unserialisable(RunParameters):
        def model_dump_json(self, **kwargs: object) -> str:
            raise ValueError("cannot serialise")

    good = _parameters()
    bad = Unserialisable.model_validate(_parameters().model_dump())
    with pytest.raises(ValueError, match="cannot serialise"):
        intake.add_all([good, bad])
    assert intake.count() == 0


def test_waiting_follows_adds_removes_and_other_writers(tmp_path: Path) -> None:
    """`waiting` counts this process's adds and removes at once, and a recount picks up
    what another process sharing the journal removed."""
    intake = Intake(tmp_path / "intake.db")
    tasks = [_parameters() for _ in range(3)]
    intake.add_all([*tasks, tasks[0]])
    assert intake.waiting == 3
    intake.remove_all([tasks[0].task_id])
    assert intake.waiting == 2

    other = Intake(tmp_path / "intake.db")
    assert other.waiting == 2
    other.remove_all([tasks[1].task_id])
    assert intake.waiting == 2  # not seen until counted
    assert intake.count() == 1
    assert intake.waiting == 1


def test_entries_are_listed_on_either_side_of_a_time(tmp_path: Path) -> None:
    """`oldest(limit, since)` lists the tasks journaled at `since` or later and
    `accepted_before` those journaled before, each the oldest first, with when."""
    path = tmp_path / "intake.db"
    intake = Intake(path)
    tasks = [_parameters() for _ in range(4)]
    intake.add_all(tasks)
    for hours, task in zip([3, 2, 0, 1], tasks, strict=True):
        age(path, task.task_id, hours * 3600)
    cutoff = time.time() - 1.5 * 3600

    def ids(entries: list[Entry]) -> list[UUID]:
        return [entry.task_id for entry in entries]

    assert ids(intake.oldest(10, since=cutoff)) == [tasks[3].task_id, tasks[2].task_id]
    assert ids(intake.accepted_before(cutoff, 10)) == [tasks[0].task_id, tasks[1].task_id]
    assert ids(intake.accepted_before(cutoff, 1)) == [tasks[0].task_id]
    assert ids(intake.oldest(10)) == [tasks[i].task_id for i in (0, 1, 3, 2)]
    [oldest] = intake.oldest(1)
    assert time.time() - 3 * 3600 - 60 < oldest.accepted_at < time.time() - 3 * 3600
