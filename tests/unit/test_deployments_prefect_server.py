"""The embedded Prefect server's write transactions on SQLite hold the write lock from BEGIN."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from prefect.server.database.configurations import AioSqliteConfiguration

from deployments.prefect_server import begin_writes_immediately


@pytest.fixture
def configuration(tmp_path: Path) -> Iterator[tuple[AioSqliteConfiguration, Path]]:
    path = tmp_path / "prefect.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, state TEXT)")
        setup.execute("INSERT INTO runs (state) VALUES ('SCHEDULED')")
    original = AioSqliteConfiguration.begin_transaction
    yield AioSqliteConfiguration(connection_url=f"sqlite+aiosqlite:///{path}"), path
    AioSqliteConfiguration.begin_transaction = original  # type: ignore[method-assign]


def other_writer_can_begin(path: Path) -> bool:
    """Whether another connection gets the write lock now (not waiting for it)."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as error:
        if "database is locked" not in str(error):
            raise
        return False
    finally:
        other.close()


async def read_then_check(configuration: AioSqliteConfiguration, path: Path) -> bool:
    """Begin a write transaction as Prefect does, read, and ask whether another writer
    could slip a commit in before this one's first write."""
    engine = await configuration.engine()
    session = await configuration.session(engine)
    try:
        async with configuration.begin_transaction(session):
            await session.execute(sa.text("SELECT state FROM runs"))
            slipped_in = other_writer_can_begin(path)
            await session.execute(sa.text("UPDATE runs SET state = 'PENDING'"))
        return slipped_in
    finally:
        await session.close()
        await engine.dispose()


def test_prefect_alone_lets_a_commit_in_between_read_and_write(
    configuration: tuple[AioSqliteConfiguration, Path],
) -> None:
    # The failure the launcher removes: a DEFERRED transaction has read, another writer can
    # still commit, and the first write then meets "database is locked" at once.
    assert asyncio.run(read_then_check(*configuration)) is True


def test_launcher_holds_the_write_lock_from_begin(
    configuration: tuple[AioSqliteConfiguration, Path],
) -> None:
    begin_writes_immediately()
    assert asyncio.run(read_then_check(*configuration)) is False
    with sqlite3.connect(configuration[1]) as check:
        assert check.execute("SELECT state FROM runs").fetchone() == ("PENDING",)
