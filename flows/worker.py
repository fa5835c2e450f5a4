"""A long-lived worker that executes the service's flow runs in its own process.

Prefect's stock workers start one Python process per flow run (about a second of CPU
and 90 MB each); this one claims scheduled runs from the work pool the same way (by
moving them to Pending, which only one claimant can do, and only out of a scheduled
state: flows.claims) and executes them with Prefect's flow engine as asyncio tasks, at
most `WORKER_LIMIT` at once. The CPU-heavy `process` stage runs in a pool of child
processes (flows.processing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import FlowRun, State, StateType
from prefect.client.schemas.responses import WorkerFlowRunResponse
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
from prefect.flow_engine import run_flow_async
from prefect.states import Cancelled
from prefect.types._datetime import now

from core.logs import bound
from flows.claims import claim
from flows.compute import cancellation_requested, compute_flow, handed_back
from flows.engine import ClaimedRuns, record_owners
from flows.reaper import owner_mark, sweep
from flows.redelivery import Redelivery, is_undelivered, schedule_again
from flows.results import rescheduled

log = logging.getLogger(__name__)
# States whose events say a run is ready to claim (new, retried, given back) or cancelled.
_ANNOUNCED_STATES = ("Scheduled", "AwaitingRetry", "Cancelling")
# A worker silent for this many heartbeats is taken for dead (flows.reaper).
STALE_HEARTBEATS = 3
# Seconds between two listings of the runs due, at least.
MIN_LISTING_GAP = 0.1


class Worker:
    def __init__(
        self,
        client: PrefectClient,
        *,
        pool: str,
        deployment_id: UUID,
        name: str,
        limit: int,
        poll_interval: float,
        heartbeat_seconds: int,
        shutdown_grace: float,
        redelivery: Redelivery,
    ) -> None:
        self._client = client
        self._pool = pool
        self._deployment_id = deployment_id
        self._name = name
        self._limit = limit
        self._poll_interval = poll_interval
        self._heartbeat_seconds = heartbeat_seconds
        self._shutdown_grace = shutdown_grace
        self._redelivery = redelivery
        self._running: dict[UUID, asyncio.Task[None]] = {}
        self._started = now("UTC")
        # Set when a slot frees or Prefect announces a run to claim: poll now, not at the tick.
        self.woken = asyncio.Event()
        # When runs in flight were last checked for a cancellation request; a check is due
        # every poll interval, or at once when Prefect announces one.
        self._cancellations_checked = 0.0
        self._cancellation_announced = False
        # Runs Prefect listed as due and not yet claimed here, oldest first, and when
        # they were listed: a list older than a poll interval is asked for again.
        self._due: list[FlowRun] = []
        self._due_listed = 0.0
        # The flow engine's update of each run it starts writes this worker's name on it.
        record_owners(client, self._owner_of)
        # ... and reads it from the claim's answer rather than from the server.
        self._claimed = ClaimedRuns(client)

    def _owner_of(self, flow_run_id: UUID) -> str | None:
        return owner_mark(self._name) if flow_run_id in self._running else None

    async def serve(self, stop: asyncio.Event) -> None:
        """Claim and execute runs until `stop` is set, then wait for those in flight."""
        heartbeat = asyncio.create_task(self._heartbeat(stop))
        announcements = asyncio.create_task(self.watch_announcements(stop))
        log.info("worker %s polling pool %s (limit %d)", self._name, self._pool, self._limit)
        try:
            while not stop.is_set():
                await self._poll_unless_stopped(stop)
                await self._wait(stop)
        finally:
            heartbeat.cancel()
            announcements.cancel()
            await self._finish_or_hand_back()

    async def _poll_unless_stopped(self, stop: asyncio.Event) -> None:
        """One poll of Prefect, abandoned if a stop is requested meanwhile: a call to a
        busy or restarting server can take a minute, and a stop must not wait for it."""
        poll = asyncio.create_task(self._poll())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({poll, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not poll.done():
            poll.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poll

    async def _poll(self) -> None:
        try:
            if self._cancellation_check_due():
                await self._cancel_requested()
            await self._claim_and_start()
        except Exception:
            log.exception("polling Prefect failed; trying again")

    async def _finish_or_hand_back(self) -> None:
        """Let runs in flight finish within the grace period; give the rest back to the pool."""
        if not self._running:
            return
        log.info(
            "stopping: waiting up to %.0f s for %d run(s) in flight",
            self._shutdown_grace,
            len(self._running),
        )
        await asyncio.wait(list(self._running.values()), timeout=self._shutdown_grace)
        for flow_run_id, execution in list(self._running.items()):
            log.warning("handing flow run %s back to the pool", flow_run_id)
            handed_back.add(flow_run_id)
            execution.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _wait(self, stop: asyncio.Event) -> None:
        """Sleep until the next poll, a wake-up, or stop, whichever comes first."""
        self.woken.clear()
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self.woken.wait())]
        try:
            await asyncio.wait(
                waiters, timeout=self._poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _claim_and_start(self) -> None:
        free = self._limit - len(self._running)
        if free <= 0:
            return
        if len(self._due) < free or time.monotonic() - self._due_listed > self._poll_interval:
            # Prefect announces the runs of a bulk creation while it is still writing
            # them: a poll per announcement would find nothing, a hundred times over.
            await asyncio.sleep(self._due_listed + MIN_LISTING_GAP - time.monotonic())
            # Twice the free slots: under a backlog the slots that free one by one later
            # take their runs from this list, not from a query of the server each.
            listed = await self._scheduled(free + self._limit)
            self._due = [run for run in listed if run.deployment_id == self._deployment_id]
            self._due_listed = time.monotonic()
        while free > 0 and self._due:
            flow_run = self._due.pop(0)
            if flow_run.id in self._running:
                continue
            # Its slot is taken now; the claim and the run follow in their own task, so
            # the runs of one poll are claimed at once rather than one round trip each.
            # A run another worker claimed meanwhile is refused to this one (`_claim`).
            self._running[flow_run.id] = asyncio.create_task(self._claim_and_execute(flow_run))
            free -= 1

    async def _scheduled(self, limit: int) -> list[FlowRun]:
        """Up to `limit` runs of the pool due now, oldest first, by the call Prefect's own
        workers make (it also marks the pool's queue as polled, so the UI shows it ready).
        The client's method has no limit and returns every scheduled run with its
        parameters: under a backlog of hundreds, most of the server's work per poll."""
        response = await self._client.request(
            "POST",
            "/work_pools/{name}/get_scheduled_flow_runs",
            path_params={"name": self._pool},
            json={"scheduled_before": str(now("UTC") + timedelta(seconds=1)), "limit": limit},
        )
        return [WorkerFlowRunResponse.model_validate(item).flow_run for item in response.json()]

    async def _claim_and_execute(self, flow_run: FlowRun) -> None:
        try:
            claimed = await self._claim(flow_run)
        except asyncio.CancelledError:
            # Stopped mid-claim: nothing to hand back; a run left Pending with no owner
            # is rescheduled by the reaper of any worker.
            handed_back.discard(flow_run.id)
            self._running.pop(flow_run.id, None)
            raise
        except Exception:
            log.exception("claiming flow run %s failed; it stays scheduled", flow_run.id)
            claimed = False
        if not claimed:
            self._running.pop(flow_run.id, None)
            self.woken.set()
            return
        await self._execute(flow_run)

    def _cancellation_check_due(self) -> bool:
        """A check per poll would cost the server a query per finished run under a burst
        (each frees a slot and wakes the poll), for requests that come once in a while."""
        at = time.monotonic()
        if not self._cancellation_announced and at - self._cancellations_checked < (
            self._poll_interval
        ):
            return False
        self._cancellation_announced = False
        self._cancellations_checked = at
        return True

    async def _cancel_requested(self) -> None:
        """Stop the runs that someone cancelled (in the UI or with the CLI) while running.

        A stock worker kills the run's process; here the run is an asyncio task, so it is
        cancelled, the crash hook tells the engine, and the run is marked Cancelled.
        """
        if not self._running:
            return
        cancelling = await self._client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=list(self._running)),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CANCELLING])),
            )
        )
        for flow_run in cancelling:
            execution = self._running.get(flow_run.id)
            if execution is not None and flow_run.id not in cancellation_requested:
                log.info("cancelling flow run %s on request", flow_run.id)
                cancellation_requested.add(flow_run.id)
                execution.cancel()

    async def _claim(self, flow_run: FlowRun) -> bool:
        """Move the run out of its scheduled state to Pending; False when another worker got
        there first, or when the run ended since it was listed (flows.claims)."""
        state = await claim(self._client, flow_run.id)
        if state is None:
            return False
        # Who holds the run goes on it with the engine's first update (flows.engine), and
        # then the reaper of any worker reschedules it if this one dies.
        self._claimed.add(flow_run, state)
        return True

    async def _execute(self, flow_run: FlowRun) -> None:
        """Run it, every line logged meanwhile carrying its task and flow run ids."""
        with bound(task_id=flow_run.name, flow_run_id=str(flow_run.id)):
            await self._run(flow_run)

    async def _run(self, flow_run: FlowRun) -> None:
        ended: State[Any] | None = None
        try:
            # The engine reads the run (the claim's answer: flows.engine), then proposes Running.
            ended = await run_flow_async(
                compute_flow(),
                flow_run=flow_run,
                parameters=flow_run.parameters,
                return_type="state",
            )
        except asyncio.CancelledError:
            if flow_run.id not in cancellation_requested and flow_run.id not in handed_back:
                raise
        except Exception:
            log.exception("flow run %s ended abnormally", flow_run.id)
        finally:
            self._running.pop(flow_run.id, None)
            self._claimed.forget(flow_run.id)
            self.woken.set()
        if flow_run.id in handed_back:
            handed_back.discard(flow_run.id)
            await self._client.set_flow_run_state(
                flow_run.id,
                rescheduled(f"worker {self._name} stopped"),
                force=True,
            )
        if is_undelivered(ended):
            try:
                await schedule_again(self._client, flow_run.id, self._redelivery)
            except Exception as error:
                # The run stays Undelivered, for the reaper of any worker.
                log.warning("flow run %s not scheduled again: %s", flow_run.id, error)
        if flow_run.id in cancellation_requested:
            cancellation_requested.discard(flow_run.id)
            await self._client.set_flow_run_state(
                flow_run.id, Cancelled(message="Cancelled on request."), force=True
            )

    async def watch_announcements(self, stop: asyncio.Event) -> None:
        """Wake the poll as soon as Prefect's event stream announces a run of the
        deployment to claim or to cancel; the poll interval is then only a fallback."""
        names = [f"prefect.flow-run.{state}" for state in _ANNOUNCED_STATES]
        announced = EventFilter(
            event=EventNameFilter(name=names),
            related=EventRelatedFilter(id=[f"prefect.deployment.{self._deployment_id}"]),
        )
        while not stop.is_set():
            try:
                async with get_events_subscriber(
                    filter=announced, reconnection_attempts=0
                ) as subscriber:
                    async for event in subscriber:
                        if event.event.endswith(".Cancelling"):
                            self._cancellation_announced = True
                        self.woken.set()
            except Exception as error:
                log.debug("event stream unavailable, polling only: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._heartbeat_seconds)

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        """Tell Prefect this worker is alive (the UI shows the pool as ready), and give
        the runs of workers that stopped heartbeating to the pool again."""
        stale_after = STALE_HEARTBEATS * self._heartbeat_seconds
        while not stop.is_set():
            try:
                await self._client.send_worker_heartbeat(
                    work_pool_name=self._pool,
                    worker_name=self._name,
                    heartbeat_interval_seconds=self._heartbeat_seconds,
                )
                await sweep(
                    self._client,
                    pool=self._pool,
                    deployment_id=self._deployment_id,
                    own_name=self._name,
                    own_since=self._started,
                    stale_after=stale_after,
                    redelivery=self._redelivery,
                )
            except Exception as error:
                log.warning("worker heartbeat failed: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._heartbeat_seconds)
