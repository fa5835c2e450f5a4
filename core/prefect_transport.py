"""The HTTP transport of the API's Prefect client: SQLite-busy answers retried at once.

A Prefect server on SQLite answers 503 when a write meets another one in flight
("database is locked"); Prefect's client then waits 2, 4, 8 s before it tries again.
Under a burst most flow-run creations met that wait (68 of 71 busy answers in one run
of the benchmark were creations). The lock is held for milliseconds, so this transport
tries again after 10 ms, doubling up to `attempts` times, before Prefect's client sees
the 503. A 503 means the server rolled the request back, so sending it again is safe.

The worker's clients do without it (flows.engine.shared_clients): Prefect's task engine
shares a client only when its `httpx_settings` are Prefect's own, which was worth more
(two clients and SSL contexts fewer per task run). Since the server begins every write
IMMEDIATE (deployments.prefect_server), a write waits for the lock rather than meeting a
busy answer; one that still does falls back on Prefect's own retries.
"""

from __future__ import annotations

import asyncio
import random

import httpx

RETRIES = 6  # 10 ms, 20 ms ... 320 ms: 0.6 s in all, before Prefect's own backoff
FIRST_DELAY = 0.01


def busy_delay(attempt: int) -> float:
    """Seconds before try `attempt + 1` of a write that met SQLite busy: 10 ms, doubling,
    with jitter so that writers that collided do not collide again."""
    return float(FIRST_DELAY * 2**attempt * random.uniform(0.5, 1.5))


class BusyRetryTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        # Prefect's own defaults: connection failures retried 3 times, keep-alive 25 s.
        self._inner = inner or httpx.AsyncHTTPTransport(
            retries=3, limits=httpx.Limits(max_connections=16, keepalive_expiry=25)
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        for attempt in range(RETRIES):
            response = await self._inner.handle_async_request(request)
            if response.status_code != httpx.codes.SERVICE_UNAVAILABLE:
                return response
            await response.aclose()
            await asyncio.sleep(busy_delay(attempt))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def prefect_httpx_settings() -> dict[str, object]:
    """`httpx_settings` for `prefect.get_client`."""
    return {"transport": BusyRetryTransport()}
