"""The suite's HTTP calls: httpx's own functions (a new connection each, as the engine
makes them) over one TLS context.

httpx builds a TLS context for each call of its functions, loading certifi's bundle: that
was a fifth of a test process's CPU, most of it in the polls, and the suite speaks plain
HTTP to 127.0.0.1. One context, built once, serves every call.
"""

from __future__ import annotations

from typing import Any

import httpx

TLS = httpx.create_ssl_context()


def get(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(url, verify=TLS, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(url, verify=TLS, **kwargs)


def patch(url: str, **kwargs: Any) -> httpx.Response:
    return httpx.patch(url, verify=TLS, **kwargs)
