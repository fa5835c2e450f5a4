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
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
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


def main() -> None:
    begin_writes_immediately()
    from prefect.cli import app

    sys.argv = ["prefect", "server", "start", *sys.argv[1:]]
    app()


if __name__ == "__main__":
    main()
