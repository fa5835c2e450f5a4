"""`python -m deployments.prefect_server [options of prefect server start]`: Prefect's server,
with each of its write transactions on SQLite begun IMMEDIATE.

Prefect begins a write transaction DEFERRED unless its caller asks for row locks: the
transaction reads first (the deployment, the run), then writes. In WAL mode, once another
connection has committed after that first read, SQLite refuses the upgrade to a write at
once with "database is locked", whatever the busy timeout. Under a burst the worker's state
changes commit every few milliseconds, so the bulk creation of 100 runs failed whole, time
after time, each try paying for the 100 runs it built, and the late-runs service's
transitions failed alike (`make bench` on a slower machine, two runs each way: 800
creations given up and about 900 transitions failed per run before, none after, and the
Prefect server's CPU over the pooled burst of 200 went from 92 to 41-49 s). BEGIN
IMMEDIATE takes the write lock first and waits for it within the busy timeout; Prefect
does the same where it met the error itself (marking deployments ready). Only the SQLite
configuration changes; on PostgreSQL nothing does.

It also hands the memory malloc holds free back to the system every few seconds. Under a
saturating stream (`make soak`, 40 tasks in flight) the server's RSS grew 316 → 379 MB in
12 minutes while its Python objects did not (pymalloc's allocated blocks flat at 1.6
million): glibc's arenas kept the pages that the server's threads freed, 8 → 57 MB of
free memory held. `malloc_trim(0)` gave 10-30 MB back each minute, in 2-11 ms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from prefect.server.database.configurations import AioSqliteConfiguration
from sqlalchemy.ext.asyncio import AsyncSession, AsyncSessionTransaction

_begin_as_asked = AioSqliteConfiguration.begin_transaction


@asynccontextmanager
async def _begin_immediate(
    self: AioSqliteConfiguration, session: AsyncSession, with_for_update: bool = False
) -> AsyncIterator[AsyncSessionTransaction]:
    # with_for_update only chooses the BEGIN mode here; row locks are asked for elsewhere.
    async with _begin_as_asked(self, session, with_for_update=True) as transaction:
        yield transaction


def begin_writes_immediately() -> None:
    """Make every write transaction of Prefect's SQLite configuration BEGIN IMMEDIATE."""
    AioSqliteConfiguration.begin_transaction = _begin_immediate  # type: ignore[method-assign]


# Seconds between two trims: each takes a few milliseconds.
TRIM_EVERY = 10.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim: Callable[[int], int] | None = getattr(ctypes.CDLL(name), "malloc_trim", None)
    return trim


def trim_freed_memory() -> bool:
    """Give the pages malloc holds free back to the system, once; False if it cannot."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def keep_trimming(every: float = TRIM_EVERY) -> threading.Thread | None:
    """A daemon thread calling `trim_freed_memory` every `every` seconds; None (and no
    thread) where malloc cannot be trimmed."""
    trim = _malloc_trim()
    if trim is None:
        return None

    def loop() -> None:
        while True:
            time.sleep(every)
            trim(0)

    thread = threading.Thread(target=loop, name="malloc-trim", daemon=True)
    thread.start()
    return thread


def main() -> None:
    begin_writes_immediately()
    keep_trimming()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *sys.argv[1:]]
    app()


if __name__ == "__main__":
    main()
