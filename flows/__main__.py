"""`python -m flows`: register the deployment and execute its flow runs until stopped."""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
from typing import NoReturn

from prefect.events.worker import EventsWorker

from core.logs import configure_logging
from core.prefect_auth import OpenPrefect, require_closed_door
from core.runs import deployment_name, work_pool_name
from flows.callback import close_client as close_callback_client
from flows.compute import quiet_foreseen_failures
from flows.deployment import ensure_deployment
from flows.engine import (
    quiet_completed_task_runs,
    shared_clients,
    skip_suspension_watch,
    without_run_heartbeats,
)
from flows.metrics import serve as serve_metrics
from flows.redelivery import Redelivery
from flows.results import keep_deleting_expired
from flows.results import prepare as prepare_results
from flows.runtime import Runtime, runtime
from flows.stages import result_store
from flows.worker import Worker

log = logging.getLogger("flows")
# Prefect drains its queues of events and logs for the server when the interpreter exits,
# each event tried about ten times, a second apart, while the server is unreachable: a
# worker stopped while Prefect was down (or stopped before it) hung for minutes, and was
# killed. They get this long; what is still queued then is dropped, and said.
DRAIN_SECONDS = 10.0


def drain_prefect_queues(timeout: float) -> bool:
    """Deliver what Prefect still holds for its server; False if some was not in time.
    (`drain_all` waits for every queue service, the log queue with the events'.)"""
    drained = EventsWorker.drain_all(timeout=timeout)
    assert isinstance(drained, tuple)  # a tuple of futures when called without a loop
    _, left = drained
    return not left


async def serve(stop: asyncio.Event) -> None:
    rt = runtime()
    pool = work_pool_name(rt.settings, rt.service.description.slug)
    serve_metrics(rt.settings.worker_metrics_host, rt.settings.worker_metrics_port)
    await rt.pool.warm()
    skip_suspension_watch()
    quiet_completed_task_runs()
    quiet_foreseen_failures()
    # Prefect's run loggers name the deployment from this variable, which its own workers
    # set for each run's process; this worker runs every run of its one deployment.
    os.environ["PREFECT__DEPLOYMENT_NAME"] = deployment_name(rt.service.description.slug)
    with without_run_heartbeats():
        await _serve_with_prefect(stop, rt, pool)
    rt.pool.shutdown()
    log.info("worker stopped")


async def _serve_with_prefect(stop: asyncio.Event, rt: Runtime, pool: str) -> None:
    async with shared_clients() as client:
        deployment_id = await ensure_deployment(client, rt.service, pool)
        await prepare_results(rt.settings, rt.service.description.slug)
        worker = Worker(
            client,
            pool=pool,
            deployment_id=deployment_id,
            name=rt.settings.worker_name or f"{socket.gethostname()}-{os.getpid()}",
            limit=rt.settings.worker_limit,
            poll_interval=rt.settings.worker_poll_interval,
            heartbeat_seconds=rt.settings.worker_heartbeat_seconds,
            shutdown_grace=rt.settings.worker_shutdown_grace,
            redelivery=Redelivery.of(rt.settings),
        )
        janitor = asyncio.create_task(
            keep_deleting_expired(result_store(), rt.settings.result_ttl, stop)
        )
        await worker.serve(stop)
        await janitor
        await close_callback_client()


def main() -> None:
    """Serve in a thread, and take SIGTERM and SIGINT in the main thread.

    Prefect's flow engine replaces the SIGTERM handler of the main thread while a flow
    runs (to crash the run), which would turn a graceful stop into crashed runs and error
    callbacks. Signal handlers can only be set in the main thread, so with the event loop
    in another one, the engine leaves them to us.
    """
    configure_logging(runtime().settings)
    try:
        require_closed_door(runtime().settings.environment)
    except OpenPrefect as error:
        raise SystemExit(f"refusing to start: {error}") from None
    stop = asyncio.Event()
    requested = threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []
    failed = threading.Event()

    def run() -> None:
        async def with_loop() -> None:
            loops.append(asyncio.get_running_loop())
            if requested.is_set():  # a signal came before the loop existed
                stop.set()
            await serve(stop)

        try:
            asyncio.run(with_loop())
        except BaseException:
            failed.set()  # for the exit status; the thread's hook prints the traceback
            raise

    def request_stop(signum: int, frame: object) -> None:
        log.info("stop requested (signal %d)", signum)
        requested.set()
        if loops:
            loops[0].call_soon_threadsafe(stop.set)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)
    # `kill -USR1 <pid>` prints every thread's stack: where a stuck worker is stuck.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    thread = threading.Thread(target=run, name="worker")
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    finish(1 if failed.is_set() else 0)


def finish(status: int) -> NoReturn:
    """Exit with `status` once Prefect has what it is owed, or after DRAIN_SECONDS."""
    if not drain_prefect_queues(DRAIN_SECONDS):
        log.warning(
            "Prefect did not take the last events within %.0f s (unreachable?); dropped",
            DRAIN_SECONDS,
        )
        logging.shutdown()
        # Now: the interpreter's own exit would wait on the same queues, unbounded.
        os._exit(status)
    sys.exit(status)


if __name__ == "__main__":
    main()
