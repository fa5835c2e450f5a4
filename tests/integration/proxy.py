"""A TCP proxy in front of the S3 server that can fail or hold connections on demand."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from chaos.gate import pipe


class Proxy:
    """Forwards 127.0.0.1:<port> to `target_port`.

    `drop_first` connections are closed at once (S3 briefly unreachable); a request
    whose first bytes satisfy `hold` waits until `release()` (a stage caught mid-way); one
    whose first bytes satisfy `refuse` is closed unanswered until `heal()` (S3 refusing
    writes, say, for as long as a test wants).
    """

    def __init__(
        self,
        target_port: int,
        drop_first: int = 0,
        hold: Callable[[bytes], bool] | None = None,
        refuse: Callable[[bytes], bool] | None = None,
    ) -> None:
        self._target_port = target_port
        self._drop_left = drop_first
        self._hold = hold
        self._refuse = refuse
        self.refused = 0
        self._released = threading.Event()
        self.dropped = 0
        self.held = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def release(self) -> None:
        self._released.set()

    def heal(self) -> None:
        self._refuse = None

    def close(self) -> None:
        self._released.set()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                drop = self._drop_left > 0
                if drop:
                    self._drop_left -= 1
                    self.dropped += 1
            if drop:
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self._target_port)) as upstream:
            first = client.recv(65536)
            refuse = self._refuse
            if refuse is not None and refuse(first):
                with self._lock:
                    self.refused += 1
                return
            if self._hold is not None and self._hold(first):
                self.held.set()
                self._released.wait(60)
            upstream.sendall(first)
            pump = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
            pump.start()
            pipe(client, upstream)
            pump.join(60)
