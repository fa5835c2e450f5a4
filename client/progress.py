"""A one-line progress bar over the status stages of a task."""

from __future__ import annotations

import time
from typing import TextIO

STAGES = ["pending", "fetching", "processing", "saving", "finished"]
WIDTH = 20


class Progress:
    """Redraws one line on a terminal; elsewhere (a pipe, a log) prints a line per stage."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._shown: str | None = None
        self._started = time.monotonic()

    def show(self, status: str) -> None:
        if not self._tty and status == self._shown:
            return
        self._shown = status
        done = STAGES.index(status) if status in STAGES else len(STAGES) - 1
        filled = WIDTH * done // (len(STAGES) - 1)
        bar = "#" * filled + "." * (WIDTH - filled)
        line = f"[{bar}] {status:<10} {time.monotonic() - self._started:5.1f} s"
        self._stream.write(f"\r{line}" if self._tty else f"{line}\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty and self._shown is not None:
            self._stream.write("\n")
            self._stream.flush()
