"""What the API refuses before it does anything with a request.

`callback_url` and `s3_host` come from the request, so an open service could be made to
call any address (SSRF): they must name an allowed host (`core.settings.host_allowed`,
the rule the worker applies again to every run it executes: flows.inputs). Bodies are
capped so a huge request cannot exhaust memory.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """ASGI middleware answering 413 to a body larger than `limit` bytes, declared or sent;
    `on_refuse` hears of each refusal with the request's path."""

    def __init__(
        self, app: ASGIApp, limit: int, on_refuse: Callable[[str], None] | None = None
    ) -> None:
        self._app = app
        self._limit = limit
        self._on_refuse = on_refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._limit:
            await self._refuse(scope, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self._limit:
                raise _TooLarge
            return message

        try:
            await self._app(scope, limited, send)
        except _TooLarge:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        if self._on_refuse is not None:
            self._on_refuse(scope["path"])
        body = f'{{"detail": "request body larger than {self._limit} bytes"}}'.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
