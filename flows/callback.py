"""Telling the engine how a task ended: `PATCH {callback_url}` with a TaskUpdate."""

from __future__ import annotations

import asyncio
import ssl
import weakref
from functools import cache

import httpx

from contract.models import TaskStatus, TaskUpdate
from flows.errors import PermanentError, TaskError, TransientError
from flows.metrics import CALLBACK_ATTEMPTS, CALLBACK_FAILURES

_FINAL = (TaskStatus.FINISHED, TaskStatus.ERROR)


@cache
def _tls() -> ssl.SSLContext:
    """One SSL context for every callback: building one loads the CA bundle (~10 ms)."""
    return httpx.create_ssl_context()


# One client per event loop (a worker has one; tests run many), so that the callbacks to
# an engine reuse its connections: a client and a connection per PATCH were an eighth of
# the worker's time on its loop. Idle connections are dropped before uvicorn's 5 s
# keep-alive would close them under a request.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)
_KEEPALIVE_SECONDS = 4.0


def _client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        limits = httpx.Limits(keepalive_expiry=_KEEPALIVE_SECONDS)
        client = httpx.AsyncClient(verify=_tls(), limits=limits)
        _clients[loop] = client
    return client


async def close_client() -> None:
    """Close this loop's client and its connections (a stopping worker)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


async def send_update(callback_url: str, update: TaskUpdate, request_timeout: float) -> None:
    """PATCH the update; 2xx is done, 5xx and network faults are transient, 4xx permanent.
    Every attempt, and every failed one, is counted by kind (final or progress)."""
    kind = "final" if update.status in _FINAL else "progress"
    CALLBACK_ATTEMPTS.labels(kind).inc()
    try:
        await _patch(callback_url, update, request_timeout)
    except TaskError:
        CALLBACK_FAILURES.labels(kind).inc()
        raise


async def _patch(callback_url: str, update: TaskUpdate, request_timeout: float) -> None:
    body = update.model_dump(mode="json")
    try:
        response = await _client().patch(callback_url, json=body, timeout=request_timeout)
    except httpx.TransportError as error:
        raise TransientError(
            f"engine unreachable at {callback_url}: {type(error).__name__}"
        ) from None
    if response.is_success:
        return
    detail = response.text[:200]
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientError(f"engine answered {response.status_code} to the callback: {detail}")
    raise PermanentError(
        f"engine refused the callback to {callback_url} with {response.status_code}: {detail}"
    )
