"""`make run`'s launcher: starts what is missing, says where to look, stops on Ctrl-C."""

from __future__ import annotations

import signal

import pytest

from tests import plain_http
from tests.conftest import free_port
from tests.integration.conftest import RunningStack, launcher, session, wait_for

pytestmark = pytest.mark.integration


def test_launcher_serves_prints_urls_and_stops_everything_on_ctrl_c(stack: RunningStack) -> None:
    """With a Prefect server already up, it starts a worker and the API, prints the docs and
    UI URLs, and on SIGINT stops both and exits 0."""
    port = free_port()
    with launcher(SERVICE_PORT=str(port)) as (process, printed):
        assert f"http://127.0.0.1:{port}/docs" in printed
        assert stack.prefect_api.removesuffix("/api") in printed
        assert plain_http.get(f"http://127.0.0.1:{port}/status").json() == {
            "status": "Service is available"
        }
        children = _children(process.pid)
        assert len(children) == 2, children  # a worker and the API; the server was reused

        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
        wait_for(lambda: not any(_alive(pid) for pid in children), 30, "children to exit")


def test_a_test_failing_while_the_launcher_runs_leaves_none_of_its_processes(
    stack: RunningStack,
) -> None:
    """The suite's own helper: a test that fails with the launcher up has it stop its
    worker and API, as Ctrl-C does; nothing of its session is left running."""
    failing = pytest.raises(RuntimeError, match="the test failed")
    with failing, launcher(SERVICE_PORT=str(free_port())) as (process, _):
        # It, its worker and its API at least (the server is the suite's).
        assert len(session(process.pid)) >= 3, session(process.pid)
        raise RuntimeError("the test failed")
    assert process.returncode == 0  # stopped as by Ctrl-C, not killed
    assert session(process.pid) == []


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        return [int(child) for child in listing.read().split()]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
