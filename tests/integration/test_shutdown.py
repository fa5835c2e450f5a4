"""Ctrl-C on `make run` and `make run-scaled`, as a terminal sends it: SIGINT to the whole
foreground process group. The supervisor alone gets it and stops its processes one at a
time, the last started first (PostgreSQL after the Prefect server that uses it), with a
calm line for each and nothing left running."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deployments.local import ROOT
from tests.conftest import NOT_MEASURED, free_port
from tests.integration.conftest import kill_session, session, wait_for

BANNER = "Ctrl-C stops everything"
# Seconds to come up on a busy two-core machine (the supervisor gives up after its own
# deadlines and exits before this), and to stop.
START = 600
STOP = 300
# What the children printed when they were signalled alongside the supervisor: the
# worker's process pool interrupted, the Prefect server losing its database.
ALARMS = (
    "Traceback",
    "KeyboardInterrupt",
    "database system is shutting down",
    "Connection refused",
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(START + STOP + 60)]


def ctrl_c(tmp_path: Path, *args: str) -> tuple[int, str, list[str]]:
    """Run `python -m <args>` in a session of its own, as a shell runs a command in a
    terminal, on ports and in folders of its own; once it says it is up, SIGINT its
    process group. Its exit status, everything it and its processes printed, and what was
    left running in its session once it had exited."""
    output = tmp_path / "output.log"
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "SERVICE_PORT": str(free_port()),
        "INTAKE_PATH": str(tmp_path / "intake.db"),
        # No other ports than those: many stacks run on this machine at once.
        "WORKER_METRICS_PORT": "0",
        "LOCAL_S3_URL": "",
        **NOT_MEASURED,
    }
    with output.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def up() -> bool:
            if BANNER in output.read_text():
                return True
            assert process.poll() is None, f"exited while starting:\n{output.read_text()}"
            return False

        wait_for(up, START, f"{args[0]} to say it is up")
        assert len(session(process.pid)) > 1, "no process started in its session"
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(STOP)
        # A process may end a moment after the one it belongs to (the worker's resource
        # tracker, once the worker has exited).
        deadline = time.monotonic() + 30
        while session(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        return code, output.read_text(), session(process.pid)
    finally:
        # Whatever a failure left behind, so that it does not outlive the test.
        kill_session(process.pid)
        if process.poll() is None:
            process.kill()
            process.wait()


def stopped(output: str) -> list[str]:
    """The processes the supervisor said it stopped, in order."""
    return re.findall(r"^stopped (.+)$", output, re.MULTILINE)


def test_ctrl_c_on_make_run_stops_the_api_the_worker_then_the_prefect_server(
    tmp_path: Path,
) -> None:
    """`deployments.local` (a Prefect server on SQLite, a worker, the API) stops the API,
    then the worker, then the server, exits 0, prints no traceback, and leaves nothing."""
    code, output, left = ctrl_c(tmp_path, "deployments.local")
    assert code == 0, output
    assert stopped(output) == ["api", "worker", "prefect server"], output
    for alarm in ALARMS:
        assert alarm not in output, output
    assert left == []


@pytest.mark.distributed
def test_ctrl_c_on_make_run_scaled_stops_postgresql_after_the_prefect_server(
    tmp_path: Path,
) -> None:
    """`deployments.scaled` stops the API, the worker, the Prefect server and PostgreSQL in
    that order (PostgreSQL hears of its shutdown only once the server has exited), exits 0
    without a traceback or a lost database connection in its output, and leaves nothing."""
    code, output, left = ctrl_c(tmp_path, "deployments.scaled", "--apis", "1", "--workers", "1")
    assert code == 0, output
    worker = f"worker {socket.gethostname()}-worker-1"
    assert stopped(output) == ["api", worker, "prefect server", "postgres"], output
    assert output.index("stopped prefect server") < output.index(
        "received fast shutdown request"
    ), output
    for alarm in ALARMS:
        assert alarm not in output, output
    assert left == []
