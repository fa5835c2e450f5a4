"""A TCP gate in front of a port: open, it forwards; shut, nothing answers there.

What "S3 is away" and "the engine refuses its callbacks" look like from the service: a
new connection is refused and the ones open are cut, until the gate opens again on the
same port.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable

from deployments.local import free_port


class Gate:
    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        # When (time.monotonic()) each shut cut the connections open through the gate.
        self.cuts: list[float] = []
        self.open()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def open(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            self._listener = socket.create_server(("127.0.0.1", self.port))
            listener = self._listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def shut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            cut, self._open = self._open, set()
            self.cuts.append(time.monotonic())
        for sock in ([listener] if listener is not None else []) + list(cut):
            # shutdown first: it wakes a thread blocked in accept() or recv(), close does not.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # shut
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, *socks: socket.socket) -> bool:
        """Count sockets as open through the gate; False (and closed) if it shut meanwhile."""
        with self._lock:
            if self._listener is None:
                for sock in socks:
                    sock.close()
                return False
            self._open.update(socks)
            return True

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self._target_port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            client.close()
            return
        if not self._track(client, upstream):
            return
        pump = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        pump.start()
        pipe(client, upstream)
        pump.join()
        with self._lock:
            self._open.discard(client)
            self._open.discard(upstream)
        client.close()
        upstream.close()


def pipe(
    source: socket.socket, sink: socket.socket, seen: Callable[[bytes], None] | None = None
) -> None:
    """Copy `source` to `sink` until either closes (showing each chunk to `seen`, if
    given); then close `sink`'s writing side."""
    try:
        while chunk := source.recv(65536):
            if seen is not None:
                seen(chunk)
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
