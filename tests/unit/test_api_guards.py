"""api.guards: the body limit (the host allowlist is tested with core.settings)."""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from api.guards import BodyLimit


def _call(limit: int, headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> list[Message]:
    """Send a request through BodyLimit around an app that reads the whole body."""
    sent: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "headers": headers}
    asyncio.run(BodyLimit(app, limit)(scope, receive, send))
    return sent


def test_declared_length_over_the_limit_is_413() -> None:
    """A Content-Length over the limit is refused before the body is read."""
    sent = _call(10, [(b"content-length", b"11")], [b"x" * 11])
    assert sent[0]["status"] == 413


def test_streamed_body_over_the_limit_is_413() -> None:
    """A body without a Content-Length is counted as it arrives and cut at the limit."""
    sent = _call(10, [], [b"x" * 6, b"x" * 6])
    assert sent[0]["status"] == 413
    assert b"larger than 10 bytes" in sent[1]["body"]


def test_body_within_the_limit_passes() -> None:
    """A body at the limit reaches the app."""
    sent = _call(10, [(b"content-length", b"10")], [b"x" * 5, b"x" * 5])
    assert sent[0]["status"] == 200


def test_non_http_scopes_pass_through() -> None:
    """Lifespan and other scopes are not touched."""
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    async def receive() -> Message:
        return {}

    async def send(message: Message) -> None:
        pass

    asyncio.run(BodyLimit(app, 10)({"type": "lifespan"}, receive, send))
    assert seen == ["lifespan"]


def test_refusals_are_reported_with_the_path() -> None:
    """`on_refuse` hears of each 413 with the request's path, and of nothing else."""
    refused: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        pass

    guard = BodyLimit(app, 10, on_refuse=refused.append)
    big: Scope = {"type": "http", "path": "/compute", "headers": [(b"content-length", b"11")]}
    small: Scope = {"type": "http", "path": "/compute", "headers": [(b"content-length", b"1")]}
    asyncio.run(guard(big, receive, send))
    asyncio.run(guard(small, receive, send))
    assert refused == ["/compute"]
