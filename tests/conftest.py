"""Settings for the whole suite, fixed before anything imports Prefect.

Prefect reads its settings once, at import: the suite's own Prefect home, API port and
service settings go into the environment here, ahead of `.env`, so no test touches the
developer's database or ports. Each process that imports this module (pytest, or each of
`make test`'s xdist workers) gets a folder and ports of its own, and removes the folder
when its session ends, whether the tests passed or not.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from xdist.scheduler import LoadScopeScheduling


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


WORKDIR = Path(tempfile.mkdtemp(prefix="service-tests-"))
PREFECT_PORT = free_port()
SERVICE_PORT = free_port()
S3_SECRET = f"s3-secret-{os.urandom(8).hex()}"
SEALING_KEY = Fernet.generate_key().decode()

os.environ.update(
    {
        "PREFECT_HOME": str(WORKDIR / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{PREFECT_PORT}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "SEALING_KEY": SEALING_KEY,
        "SERVICE_MODULE": "services.image_rotate",
        "SERVICE_HOST": "127.0.0.1",
        "SERVICE_PORT": str(SERVICE_PORT),
        "SERVICE_URL": f"http://127.0.0.1:{SERVICE_PORT}",
        "ENGINE_URLS": "[]",
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "debug",
        "WORK_POOL": "",
        # Prefect's event stream wakes a worker as soon as a run is scheduled; the poll is
        # the fallback. Every 0.1 s, an idle stack took 18 % of a core (the Prefect server
        # answering the listings), every 2 s 4 %.
        "WORKER_POLL_INTERVAL": "1",
        "WORKER_LIMIT": "8",
        "WORKER_HEARTBEAT_SECONDS": "1",
        "WORKER_SHUTDOWN_GRACE": "5",
        "PROCESS_POOL_SIZE": "1",
        # No metrics port unless a test asks for one: many workers start on this machine.
        "WORKER_METRICS_PORT": "0",
        "MAX_TASKS": "50",
        "INTAKE_PATH": str(WORKDIR / "intake.db"),
        "RESULT_STORAGE": str(WORKDIR / "results"),
        # Long enough to see a retry happen, short enough for a quick suite.
        "TRANSIENT_RETRIES": "5",
        "RETRY_BASE_DELAY": "0.2",
        "S3_TIMEOUT": "10",
        "CALLBACK_TIMEOUT": "10",
    }
)


# `make test` runs the suite in xdist processes side by side, in work units: the tests of
# the distributed cluster (test_distributed.py) one unit, every other integration test
# (over the stack the suite starts, and its other services' stacks over its Prefect
# server) another, each of the rest (unit tests; tests that start servers of their own)
# a unit by itself. A unit runs in one process, in the order collected, so its servers
# start once. (The stack's tests in two units, each over a stack of its own, took 9 min
# 41 s against 8 min 14 s: the two cores are the bound, not the waits.)
OWN_SERVERS = (
    "test_benchmark_smoke.py",
    "test_prefect_auth.py",
    "test_retention.py",
    "test_shutdown.py",
)
# The long units, sent to the processes first, in this order; the short ones fill the
# processes around them.
LONG_UNITS = ("cluster", "stack", "chaos")


def work_unit(nodeid: str) -> str:
    """The xdist work unit of the test `nodeid`."""
    path = nodeid.split("::", 1)[0]
    folder, _, module = path.rpartition("/")
    if not folder.endswith("tests/integration") or module in OWN_SERVERS:
        return nodeid
    return {"test_distributed.py": "cluster", "test_chaos.py": "chaos"}.get(module, "stack")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long units first, then the tests that start servers of their own, then the unit
    tests; within the stack's, the secret scan last, over everything the other tests made
    the stack write (the stack's teardown scans its files once more, when it has stopped:
    integration/conftest.py)."""

    def rank(item: pytest.Item) -> tuple[int, bool]:
        unit = work_unit(item.nodeid)
        if unit in LONG_UNITS:
            order = LONG_UNITS.index(unit)
        else:
            order = len(LONG_UNITS) + ("tests/integration/" not in item.nodeid)
        return order, item.path.name == "test_secrets.py"

    items.sort(key=rank)


class SharedServers(LoadScopeScheduling):  # type: ignore[misc]  # xdist: untyped
    """xdist's `loadscope` scheduling, over the work units of `work_unit`. (Its
    `loadgroup` and `xdist_group` marks would say the same, but do not group under
    pytest 9.2: pytest-xdist issue 1386.)"""

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> SharedServers:
    return SharedServers(config, log)


@pytest.hookimpl(tryfirst=True)  # before pytest's own, which makes the folder of tmp_path
def pytest_configure(config: pytest.Config) -> None:
    """pytest's temporary folders (tmp_path) in the suite's folder, so they go with it.
    (xdist's processes are given theirs, inside the folder of the process that runs them.)"""
    if config.option.basetemp is None:
        config.option.basetemp = str(WORKDIR / "pytest")


def pytest_unconfigure(config: pytest.Config) -> None:
    """The suite's folder goes with it (after every fixture's teardown, on a failure too)."""
    shutil.rmtree(WORKDIR, ignore_errors=True)


# The environment of a child process whose coverage is not measured: `patch = subprocess`
# measures every Python child of the suite through this variable, and an empty one is
# off. Measured: the test processes and the suite's own stack (its worker, with the
# processes its flow runs in, and its API). Every other child runs no code of the project
# (a Prefect server) or code those measure already (extra workers and APIs, other
# services' stacks, launchers, the cluster, the chaos and benchmark stacks): measuring a
# process costs about 1.9 times its CPU, and the suite is bound by its two cores.
NOT_MEASURED = {"COVERAGE_PROCESS_CONFIG": ""}


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver on 127.0.0.1 for the whole suite (its default is "localhost"),
    whichever test starts it first."""
    return ("127.0.0.1", free_port())
