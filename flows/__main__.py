"""`python -m flows`: register the deployment and execute its flow runs until stopped."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket

from prefect.client.orchestration import get_client

from core.logs import configure_logging
from core.runs import work_pool_name
from flows.deployment import ensure_deployment
from flows.runtime import runtime
from flows.worker import Worker

log = logging.getLogger("flows")


async def main() -> None:
    rt = runtime()
    configure_logging(rt.settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    pool = work_pool_name(rt.settings, rt.service.description.slug)
    await rt.pool.warm()
    async with get_client() as client:
        deployment_id = await ensure_deployment(client, rt.service, pool)
        worker = Worker(
            client,
            pool=pool,
            deployment_id=deployment_id,
            name=rt.settings.worker_name or f"{socket.gethostname()}-{os.getpid()}",
            limit=rt.settings.worker_limit,
            poll_interval=rt.settings.worker_poll_interval,
        )
        await worker.serve(stop)
    rt.pool.shutdown()
    log.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
