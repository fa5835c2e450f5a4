"""The durable intake: where `/compute` puts a task before answering 200.

Creating a flow run can wait seconds on a busy Prefect server (SQLite serialises its
writers), and the engine gives `/compute` 5 s. So a task is first committed to a local
SQLite journal (WAL, fsync on commit), which takes about a millisecond; the forwarder
then hands it to Prefect and removes it. A task in the journal survives a crash or a
restart of the API and is forwarded when it comes back.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

from core.runs import RunParameters

_SCHEMA = """
CREATE TABLE IF NOT EXISTS intake (
    task_id TEXT PRIMARY KEY,
    parameters TEXT NOT NULL,
    accepted_at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class Entry:
    task_id: UUID
    parameters: RunParameters


class Intake:
    """A journal of accepted tasks not yet handed to Prefect; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before `/compute` answers 200.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.execute(_SCHEMA)

    def add(self, parameters: RunParameters) -> bool:
        """Journal a task; False when it was already there (the same task posted twice)."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO intake (task_id, parameters, accepted_at) VALUES (?, ?, ?)",
                (str(parameters.task_id), parameters.model_dump_json(), time.time()),
            )
            return cursor.rowcount == 1

    def contains(self, task_id: UUID) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM intake WHERE task_id = ?", (str(task_id),)
            ).fetchone()
            return row is not None

    def count(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM intake").fetchone()
            return int(count)

    def oldest(self, limit: int) -> list[Entry]:
        """The tasks waiting longest, first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT task_id, parameters FROM intake ORDER BY accepted_at LIMIT ?", (limit,)
            ).fetchall()
        return [
            Entry(UUID(task_id), RunParameters.model_validate_json(raw)) for task_id, raw in rows
        ]

    def remove(self, task_id: UUID) -> None:
        """Forget a task once Prefect holds its flow run."""
        with self._lock:
            self._db.execute("DELETE FROM intake WHERE task_id = ?", (str(task_id),))

    def close(self) -> None:
        with self._lock:
            self._db.close()
