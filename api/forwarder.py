"""Handing journaled tasks to Prefect, in the background of the API process.

Runs as one asyncio task: it wakes when a task is journaled (or every second), creates
the flow runs of the oldest entries in one bulk request, and removes the entries whose
runs Prefect holds.
The task id is the run's idempotency key, so forwarding an entry twice (after a crash
between create and remove, or from two API processes sharing the journal) is one run.
While `/compute` requests are in flight it waits for them to be answered (at most
SETTLE_SECONDS): a bulk creation keeps the Prefect server busy on the other core, and the
worker with it, while the burst's answers queue behind the same CPU.
It also keeps the counts of unended flow runs and of journaled tasks fresh, so
`/compute` checks its backlog without waiting on Prefect or on the journal, and ends the
tasks Prefect never took within RUN_RETENTION (`api.expiry`), which it no longer forwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

from api.expiry import expire
from api.intake import Intake
from api.orchestrator import BULK_CREATE_LIMIT, Orchestrator, OrchestratorUnavailable, busy

log = logging.getLogger(__name__)
BATCH = BULK_CREATE_LIMIT
IDLE_SECONDS = 1.0
# Short: /status says 503 until the forwarder next reaches Prefect.
MAX_BACKOFF_SECONDS = 5.0
# Longest the forwarder waits for the `/compute` requests in flight to be answered: a
# burst of 200 is answered in about 50 ms here, and a steady stream of requests must not
# hold the forwarding back for longer than this.
SETTLE_SECONDS = 0.2
# Seconds between passes over the journal for tasks older than RUN_RETENTION: a task
# waits a week for that; an engine that does not take their callbacks is asked again
# after this.
EXPIRY_SECONDS = 60.0


class Forwarder:
    def __init__(self, intake: Intake, orchestrator: Orchestrator, retention: float) -> None:
        self._intake = intake
        self._orchestrator = orchestrator
        # RUN_RETENTION: a task journaled longer ago is ended, not forwarded.
        self._retention = retention
        self._next_expiry = 0.0
        self._wake = asyncio.Event()
        self._accepting = 0
        self._settled = asyncio.Event()
        self._settled.set()
        self.unended_in_prefect = 0
        self.last_error: str | None = None

    def wake(self) -> None:
        """Called after a task is journaled: forward it now rather than at the next tick."""
        self._wake.set()

    @contextlib.contextmanager
    def accepting(self) -> Iterator[None]:
        """Around a `/compute` request: the forwarder waits until none is in flight."""
        self._accepting += 1
        self._settled.clear()
        try:
            yield
        finally:
            self._accepting -= 1
            if self._accepting == 0:
                self._settled.set()

    async def settled(self) -> None:
        """Once no `/compute` is in flight, or after SETTLE_SECONDS of them."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._settled.wait(), timeout=SETTLE_SECONDS)

    async def run(self) -> None:
        """Forward until cancelled, backing off while Prefect is unreachable."""
        backoff = IDLE_SECONDS
        while True:
            self._wake.clear()  # before reading, so a task journaled meanwhile wakes us
            try:
                await self.expire_if_due()
                await self.settled()
                forwarded = await self.forward_once()
                await asyncio.to_thread(self._intake.count)  # refreshes intake.waiting
                self.unended_in_prefect = await self._orchestrator.backlog()
                self.last_error = None
                backoff = IDLE_SECONDS
                if forwarded == BATCH:
                    continue  # more may be waiting
            except OrchestratorUnavailable as error:
                if self.last_error != str(error):
                    log.warning("cannot forward tasks to Prefect yet: %s", error)
                self.last_error = str(error)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            except Exception:
                log.exception("forwarding tasks to Prefect failed")
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)

    async def expire_if_due(self) -> None:
        """End the tasks older than RUN_RETENTION, every EXPIRY_SECONDS. In this loop,
        before forwarding: an entry is never forwarded and ended at once."""
        if time.monotonic() < self._next_expiry:
            return
        self._next_expiry = time.monotonic() + EXPIRY_SECONDS
        await expire(self._intake, self._retention, time.time())

    async def forward_once(self) -> int:
        """Create the flow runs of up to BATCH journaled tasks not older than RUN_RETENTION;
        how many Prefect now holds."""
        since = time.time() - self._retention
        entries = await asyncio.to_thread(self._intake.oldest, BATCH, since)
        if not entries:
            return 0
        results = await self._orchestrator.submit_all([entry.parameters for entry in entries])
        held = []
        busy_count = 0
        for entry, result in zip(entries, results, strict=True):
            ids = {"task_id": str(entry.task_id)}
            if isinstance(result, str):
                # Kept in the journal and tried again: a refusal is a deployment or server
                # problem an operator fixes, never a reason to lose an accepted task.
                if busy(result):
                    busy_count += 1  # one line for the batch, not one per task
                else:
                    log.error("Prefect refused the flow run of a task: %s", result, extra=ids)
                continue
            held.append(entry.task_id)
            log.info("task handed to Prefect", extra=ids | {"flow_run_id": str(result)})
        if busy_count:
            log.warning(
                "Prefect's database stayed busy for %d task(s) through the retries; "
                "they stay in the journal and are tried again",
                busy_count,
            )
        await asyncio.to_thread(self._intake.remove_all, held)
        return len(held)
