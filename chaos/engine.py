"""The stand-in engine: takes every callback PATCH, as the engine does, and records it.

While `unavailable`, it answers 503 (an engine restarting behind its proxy); the service
must then try again, and the engine counts only the callbacks it answered 200.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TERMINAL = ("finished", "error")


@dataclass(frozen=True)
class Callback:
    at: float  # time.monotonic() on arrival
    status: str
    data_out: tuple[str, ...]
    error_message: str | None
    answered: int  # what the engine answered: 200 taken, 503 not

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL and self.answered == 200

    def outcome(self) -> tuple[str, tuple[str, ...]]:
        """What the engine acts on: two terminal callbacks agree when these are equal."""
        return self.status, self.data_out


class Engine:
    def __init__(self) -> None:
        self.unavailable = False
        self._lock = threading.Lock()
        # Notified at every callback, for whoever waits on tasks ending.
        self.changed = threading.Condition(self._lock)
        self.callbacks: dict[str, list[Callback]] = {}
        self.received = 0
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_PATCH(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answered = 503 if engine.unavailable else 200
                engine.record(self.path.rsplit("/", 1)[-1], json.loads(raw or b"{}"), answered)
                body = b'{"detail":"unavailable"}' if answered == 503 else b"{}"
                self.send_response(answered)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: a line per callback would bury the report."""

        class Server(ThreadingHTTPServer):
            request_queue_size = 256
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def record(self, task_id: str, body: dict[str, Any], answered: int) -> None:
        callback = Callback(
            at=time.monotonic(),
            status=str(body.get("status")),
            data_out=tuple(body.get("data_out") or ()),
            error_message=body.get("error_message"),
            answered=answered,
        )
        with self._lock:
            self.callbacks.setdefault(task_id, []).append(callback)
            self.received += 1
            self.changed.notify_all()

    def wait_beyond(self, count: int, timeout: float) -> None:
        """Until more than `count` callbacks have arrived in all, or `timeout` s."""
        with self.changed:
            self.changed.wait_for(lambda: self.received > count, timeout)

    def of(self, task_id: str) -> list[Callback]:
        with self._lock:
            return list(self.callbacks.get(task_id, ()))

    def terminal(self, task_id: str) -> list[Callback]:
        """The terminal callbacks the engine took for a task."""
        return [callback for callback in self.of(task_id) if callback.terminal]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
