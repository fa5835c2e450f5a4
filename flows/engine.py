"""Prefect's flow engine, run for many flow runs in one long-lived process.

`run_flow_async` is built for a process per flow run. For each run it would create its
own Prefect clients (each loads the CA bundle into a new SSL context: half of the
worker's CPU in a profile of a burst), and start a thread with its own event loop,
client and websocket subscription that watches for the run being suspended, while the
worker's event loop waits for that websocket to open. Here:

- the clients are created once, in Prefect's own client contexts, which every flow run
  and every task run started inside `shared_clients()` inherits and reuses. They are
  Prefect's clients as `get_client()` builds them: the task engine reuses the context's
  client only when its `httpx_settings` equal those it asks for (none), and a client with
  a transport of our own made each task run build two clients of its own, each with a
  new SSL context (two thirds of the worker's CPU under a burst);
- the suspension watch is skipped: this flow never pauses or suspends itself, and a
  run cancelled from outside is stopped by the worker (flows.worker);
- the heartbeat thread of each run (an event at its start, then every 180 s, for
  Prefect's optional detection of crashed runs) is turned off by Prefect's own setting,
  for the flow runs of this process only (`without_run_heartbeats`): the worker
  heartbeats for all its runs at once, and its reaper is what gives the runs of a dead
  worker to another (flows.reaper). A thread and an event fewer per run;
- the engine's one update of a run before it starts it (flow version, retry policy) also
  writes who holds the run (`record_owners`), which the worker would otherwise write in a
  request of its own; and the engine's read of the run as it starts it is answered by the
  run the worker has just claimed (`ClaimedRuns`), as the server would answer it: two
  requests fewer per run for the Prefect server, the part that bounds throughput;
- the line the task engine logs as each task run completes is dropped
  (`quiet_completed_task_runs`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from typing import Any
from uuid import UUID

import httpx
import prefect.flow_engine
from prefect._flow_run_suspension import FlowRunSuspensionRequest
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, State
from prefect.context import AsyncClientContext, SyncClientContext
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, Settings, temporary_settings


@asynccontextmanager
async def shared_clients() -> AsyncIterator[PrefectClient]:
    """Prefect's async and sync clients for everything run inside; yields the async one."""
    with SyncClientContext():
        async with AsyncClientContext() as context:
            yield context.client


@contextmanager
def _not_watched(
    flow_run_id: UUID, suspension_request: FlowRunSuspensionRequest, polling_interval: float = 10
) -> Iterator[None]:
    yield


def skip_suspension_watch() -> None:
    """Run flow runs without a watcher thread each (see the module's docstring)."""
    # The engine looks it up in its module's namespace at each run.
    prefect.flow_engine.observe_flow_run_suspension = _not_watched  # type: ignore[attr-defined]


def without_run_heartbeats() -> AbstractContextManager[Settings]:
    """Prefect's settings with no per-run heartbeat, for the flow runs started inside
    (the setting cannot be unset from the environment: its default is 180 s)."""
    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def record_owners(client: PrefectClient, owner_of: Callable[[UUID], str | None]) -> None:
    """Have every update of a flow run through `client` also write `owner_of(run)` as the
    run's `infrastructure_pid`, unless the update names one itself."""
    update = client.update_flow_run

    async def update_with_owner(flow_run_id: UUID, **fields: Any) -> httpx.Response:
        if fields.get("infrastructure_pid") is None:
            fields["infrastructure_pid"] = owner_of(flow_run_id)
        return await update(flow_run_id, **fields)

    # The flow engine calls the method on this very client (Prefect's client context).
    client.update_flow_run = update_with_owner  # type: ignore[method-assign, assignment]


class ClaimedRuns:
    """Runs this worker has just claimed, each as the server holds it after the claim;
    the client's next read of each is answered from here, once, and later reads ask the
    server."""

    def __init__(self, client: PrefectClient) -> None:
        self._runs: dict[UUID, FlowRun] = {}
        read = client.read_flow_run

        async def read_claimed_once(flow_run_id: UUID) -> FlowRun:
            claimed = self._runs.pop(flow_run_id, None)
            return claimed if claimed is not None else await read(flow_run_id)

        # The flow engine calls the method on this very client (Prefect's client context).
        client.read_flow_run = read_claimed_once  # type: ignore[method-assign]

    def add(self, flow_run: FlowRun, state: State[Any]) -> None:
        """`flow_run` (as listed before the claim) is now in `state`, the claim's answer."""
        self._runs[flow_run.id] = flow_run.model_copy(
            update={
                "state": state,
                "state_id": state.id,
                "state_type": state.type,
                "state_name": state.name,
            }
        )

    def forget(self, flow_run_id: UUID) -> None:
        """The run will not be started here after all."""
        self._runs.pop(flow_run_id, None)


class _NotCompletedTaskRuns(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.INFO and str(record.msg).startswith(COMPLETED_TASK_RUN)
        )


# How Prefect's task engine ends the log of every task run (`log_finished_message`), at
# INFO for a completed one (Completed, or Cached when a rerun found its result kept).
COMPLETED_TASK_RUN = "Finished in state "


def quiet_completed_task_runs() -> None:
    """Drop the line Prefect's task engine logs as each task run completes (or is Cached):
    four per flow run, each written to the worker's log and sent to the Prefect server, to
    say what the run's graph in the UI shows anyway (about 5 ms of the worker's CPU per
    flow run, and four log rows for the server). A task run that fails or retries still
    logs why."""
    logging.getLogger("prefect.task_runs").addFilter(_NotCompletedTaskRuns())
