"""Prefect's flow engine, run for many flow runs in one long-lived process.

`run_flow_async` is built for a process per flow run. For each run it would create its
own Prefect clients (each loads the CA bundle into a new SSL context: half of the
worker's CPU in a profile of a burst), and start a thread with its own event loop,
client and websocket subscription that watches for the run being suspended, while the
worker's event loop waits for that websocket to open. Here:

- the clients are created once, in Prefect's own client contexts, which every flow run
  started inside `shared_clients()` inherits and reuses; the async one, which makes the
  engine's state changes, retries SQLite-busy answers at once (core.prefect_transport)
  rather than after Prefect's 2-8 s backoff;
- the suspension watch is skipped: this flow never pauses or suspends itself, and a
  run cancelled from outside is stopped by the worker (flows.worker).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from uuid import UUID

import prefect.flow_engine
from prefect._flow_run_suspension import FlowRunSuspensionRequest
from prefect.client.orchestration import PrefectClient
from prefect.context import AsyncClientContext, SyncClientContext

from core.prefect_transport import prefect_httpx_settings


@asynccontextmanager
async def shared_clients() -> AsyncIterator[PrefectClient]:
    """Prefect's async and sync clients for everything run inside; yields the async one."""
    with SyncClientContext():
        async with AsyncClientContext(httpx_settings=prefect_httpx_settings()) as context:
            yield context.client


@contextmanager
def _not_watched(
    flow_run_id: UUID, suspension_request: FlowRunSuspensionRequest, polling_interval: float = 10
) -> Iterator[None]:
    yield


def skip_suspension_watch() -> None:
    """Run flow runs without a watcher thread each (see the module's docstring)."""
    # The engine looks the watch up in its module's namespace at each run.
    prefect.flow_engine.observe_flow_run_suspension = _not_watched  # type: ignore[attr-defined]
