"""The local endpoint the service PATCHes with the task's updates, as it would the engine."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TERMINAL = ("finished", "error")


class CallbackReceiver:
    """Listens on `host:port` (0: any free port) for PATCH /tasks/{id}; keeps the first
    terminal update (`finished` or `error`) of each task."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._final: dict[str, dict[str, Any]] = {}
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_PATCH(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                try:
                    update = json.loads(self.rfile.read(length))
                    task_id = self.path.rstrip("/").rsplit("/", 1)[-1]
                    receiver._record(task_id, update)
                except (ValueError, TypeError, AttributeError):
                    self.send_response(422)
                    self.end_headers()
                    return
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the progress line says what happens."""

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url_for(self, host: str, task_id: str) -> str:
        return f"http://{host}:{self.port}/tasks/{task_id}"

    def _record(self, task_id: str, update: dict[str, Any]) -> None:
        if update.get("status") not in TERMINAL:
            return
        with self._arrived:
            self._final.setdefault(task_id, update)
            self._arrived.notify_all()

    def final(self, task_id: str, timeout: float) -> dict[str, Any] | None:
        """The task's terminal update, waiting up to `timeout` seconds; None if none came."""
        with self._arrived:
            self._arrived.wait_for(lambda: task_id in self._final, timeout)
            return self._final.get(task_id)

    def __enter__(self) -> CallbackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
