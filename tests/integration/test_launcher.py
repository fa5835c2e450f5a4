"""`make run`'s launcher: starts what is missing, says where to look, stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from deployments.local import ROOT
from tests.conftest import free_port
from tests.integration.conftest import RunningStack, wait_for

pytestmark = pytest.mark.integration


def test_launcher_serves_prints_urls_and_stops_everything_on_ctrl_c(stack: RunningStack) -> None:
    """With a Prefect server already up, it starts a worker and the API, prints the docs and
    UI URLs, and on SIGINT stops both and exits 0."""
    port = free_port()
    env = {**os.environ, "SERVICE_PORT": str(port), "PYTHONUNBUFFERED": "1"}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "deployments.local"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert launcher.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 90
        while "Ctrl-C" not in "".join(lines) and time.monotonic() < deadline:
            line = launcher.stdout.readline()
            if not line:
                break
            lines.append(line)
        printed = "".join(lines)
        assert f"http://127.0.0.1:{port}/docs" in printed
        assert stack.prefect_api.removesuffix("/api") in printed
        assert httpx.get(f"http://127.0.0.1:{port}/status").json() == {
            "status": "Service is available"
        }
        children = _children(launcher.pid)
        assert len(children) == 2, children  # a worker and the API; the server was reused

        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(60) == 0
        wait_for(lambda: not any(_alive(pid) for pid in children), 30, "children to exit")
    finally:
        if launcher.poll() is None:
            launcher.kill()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
