"""Telling the engine how a task ended: `PATCH {callback_url}` with a TaskUpdate."""

from __future__ import annotations

import ssl
from functools import cache

import httpx

from contract.models import TaskUpdate
from flows.errors import PermanentError, TransientError


@cache
def _tls() -> ssl.SSLContext:
    """One SSL context for every callback: building one loads the CA bundle (~10 ms)."""
    return httpx.create_ssl_context()


async def send_update(callback_url: str, update: TaskUpdate, request_timeout: float) -> None:
    """PATCH the update; 2xx is done, 5xx and network faults are transient, 4xx permanent."""
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
