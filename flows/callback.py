"""Telling the engine how a task ended: `PATCH {callback_url}` with a TaskUpdate."""

from __future__ import annotations

import ssl
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
        async with httpx.AsyncClient(timeout=request_timeout, verify=_tls()) as client:
            response = await client.patch(callback_url, json=body)
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
