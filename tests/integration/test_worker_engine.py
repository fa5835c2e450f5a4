"""How the worker runs Prefect's flow engine in one process, against the real server."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import timedelta
from pathlib import Path
from uuid import uuid4

import prefect.flow_engine
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.context import AsyncClientContext, SyncClientContext, TaskRunContext
from prefect.filesystems import LocalFileSystem
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Pending

from flows.engine import (
    ClaimedRuns,
    record_owners,
    shared_clients,
    skip_suspension_watch,
    without_run_heartbeats,
)
from flows.stages import record_delivery
from tests import plain_http
from tests.integration.conftest import (
    Client,
    RunningStack,
    idle_worker,
    image_bytes,
    run_an_hour_ahead,
    wait_for,
)


def test_runs_inside_share_one_client_of_each_kind(stack: RunningStack) -> None:
    """Inside shared_clients, the client contexts the flow engine takes for each run are
    the shared ones, so flow runs create no client (and no SSL context) of their own."""

    async def scenario() -> None:
        with temporary_settings({PREFECT_API_URL: stack.prefect_api}):
            async with shared_clients() as client:
                async with AsyncClientContext.get_or_create() as async_context:
                    assert async_context.client is client
                with SyncClientContext.get_or_create() as sync_context:
                    assert get_client(sync_client=True) is sync_context.client

    asyncio.run(scenario())


def test_task_runs_inside_use_the_shared_client(stack: RunningStack) -> None:
    """A task run of a flow run inside shared_clients talks to Prefect through the shared
    client: Prefect's task engine reuses it only when its `httpx_settings` are Prefect's
    own (none), and builds two clients per task run otherwise."""
    seen: list[object] = []

    @task(persist_result=False)
    async def stage() -> None:
        context = TaskRunContext.get()
        assert context is not None
        seen.append(context.client)

    @flow(persist_result=False)
    async def stages() -> None:
        await stage()

    async def scenario() -> None:
        with temporary_settings({PREFECT_API_URL: stack.prefect_api}):
            async with shared_clients() as client:
                await stages()
                assert seen == [client]

    asyncio.run(scenario())


def test_flow_runs_start_no_suspension_watcher_and_no_heartbeat_thread() -> None:
    """The engine's per-run suspension watch (a thread, a client, a websocket) is
    skipped, and its per-run heartbeat thread (on by default) is off inside the
    worker's settings: entering either starts no thread."""

    @flow(name="probe")
    def probe() -> None: ...

    skip_suspension_watch()
    engine = prefect.flow_engine.AsyncFlowRunEngine(flow=probe)
    assert engine.heartbeat_seconds is not None, "Prefect's default has no heartbeat"
    with without_run_heartbeats():
        threads = threading.active_count()
        watch = prefect.flow_engine.observe_flow_run_suspension(uuid4(), None)  # type: ignore[attr-defined,arg-type]
        heartbeats = prefect.flow_engine._send_heartbeats(engine)
        with watch, heartbeats:
            assert threading.active_count() == threads


def test_the_workers_runs_send_no_heartbeat_event(client: Client) -> None:
    """A run the worker executes emits no `prefect.flow-run.heartbeat` (Prefect's default
    emits one as each run starts): once its Completed event is stored, it has none."""
    task_id = client.submit([client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")])
    client.engine.final(task_id)
    resource = f"prefect.flow-run.{client.flow_run_id(task_id)}"

    def stored() -> list[str] | None:
        answer = plain_http.post(
            f"{client.stack.prefect_api}/events/filter",
            json={"filter": {"resource": {"id": [resource]}}, "limit": 50},
            timeout=10,
        ).json()
        names = [event["event"] for event in answer["events"]]
        return names if "prefect.flow-run.Completed" in names else None

    names = wait_for(stored, 30, "the run's Completed event")
    assert "prefect.flow-run.Running" in names
    assert "prefect.flow-run.heartbeat" not in names


def test_a_run_announced_by_prefect_wakes_the_worker(stack: RunningStack) -> None:
    """A new run of the deployment wakes the worker at once through Prefect's event
    stream, with the next poll ten minutes away. (The run is scheduled an hour ahead, so
    the suite's worker leaves it alone.)"""

    async def scenario() -> None:
        with temporary_settings({PREFECT_API_URL: stack.prefect_api}):
            async with get_client() as client:
                worker = await idle_worker(client, "wake-test")
                stop = asyncio.Event()
                watching = asyncio.create_task(worker.watch_announcements(stop))
                run = await run_an_hour_ahead(client)
                try:
                    await asyncio.wait_for(worker.woken.wait(), timeout=60)
                finally:
                    stop.set()
                    watching.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await watching
                    await client.delete_flow_run(run.id)

    asyncio.run(scenario())


def test_a_claimed_run_is_read_once_from_the_claim(stack: RunningStack) -> None:
    """The engine's read of a run the worker has just claimed is answered by the claim
    (no request); the next read asks the server."""

    async def scenario() -> None:
        with temporary_settings({PREFECT_API_URL: stack.prefect_api}):
            async with get_client() as client:
                run = await run_an_hour_ahead(client)
                try:
                    claimed = ClaimedRuns(client)
                    claimed.add(run, Pending())
                    first = await client.read_flow_run(run.id)
                    second = await client.read_flow_run(run.id)
                finally:
                    await client.delete_flow_run(run.id)
        assert (first.state_type, second.state_type) == (StateType.PENDING, StateType.SCHEDULED)
        assert first.parameters == run.parameters

    asyncio.run(scenario())


def test_the_engines_update_of_a_run_writes_its_owner(stack: RunningStack) -> None:
    """An update of a run through the client also writes the owner given for it, unless
    the update names one; runs with no owner given keep theirs."""

    async def scenario() -> None:
        with temporary_settings({PREFECT_API_URL: stack.prefect_api}):
            async with get_client() as client:
                ours, other = await run_an_hour_ahead(client), await run_an_hour_ahead(client)
                try:
                    record_owners(client, lambda run_id: "worker:w" if run_id == ours.id else None)
                    await client.update_flow_run(ours.id, flow_version="1")
                    await client.update_flow_run(other.id, infrastructure_pid="worker:x")
                    await client.update_flow_run(other.id, flow_version="1")
                    written = [
                        (await client.read_flow_run(run.id)).infrastructure_pid
                        for run in (ours, other)
                    ]
                finally:
                    for run in (ours, other):
                        await client.delete_flow_run(run.id)
        assert written == ["worker:w", "worker:x"]

    asyncio.run(scenario())


def test_a_delivery_is_kept_under_its_cache_key_before_the_task_returns(
    stack: RunningStack, tmp_path: Path
) -> None:
    """notify's result is written when the engine has answered (flows.stages), not when
    Prefect commits it after the task returns: a worker killed in between left a rerun
    without it, and the rerun PATCHed the engine a second time. Prefect's commit does not
    write it again (a kill halfway through would lose it too). A second call with the
    same key is Cached, its body not run."""
    key = f"notify-{uuid4()}"
    kept: list[bytes] = []

    @task(cache_key_fn=lambda *_: key, persist_result=True, cache_expiration=timedelta(hours=1))
    async def deliver() -> None:
        assert not (tmp_path / key).exists()
        await record_delivery()
        kept.append((tmp_path / key).read_bytes())

    async def scenario() -> None:
        with temporary_settings({PREFECT_API_URL: stack.prefect_api}):
            storage = LocalFileSystem(basepath=str(tmp_path))
            await storage.save(f"deliveries-{uuid4()}")
            stored = deliver.with_options(result_storage=storage)

            @flow(persist_result=False)
            async def twice() -> None:
                await stored()
                await stored()

            await twice()

    asyncio.run(scenario())
    assert len(kept) == 1
    assert (tmp_path / key).read_bytes() == kept[0]
