"""The real stack, started once for the integration tests.

A Prefect server on SQLite, the worker and the API (the processes `make run` starts, by
the same code), S3 over HTTP (moto's server mode), and pytest-httpserver as the engine,
all on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import boto3
import httpx
import pytest
from PIL import Image
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import FlowRun, State
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Running, Scheduled
from prefect.types._datetime import now
from pytest_httpserver import HTTPServer

from client.cli import main as client_main
from core.runs import FLOW_NAME, RunParameters, S3Target, deployment_name
from deployments.local import (
    ROOT,
    Process,
    Stack,
    api_url,
    environment,
    responds,
    start_api,
    start_prefect_server,
    start_worker,
)
from flows.claims import claim
from flows.redelivery import Redelivery
from flows.worker import Worker
from services.base import load_service
from tests import plain_http
from tests.conftest import NOT_MEASURED, S3_SECRET, WORKDIR, free_port

BUCKET = "engine"
# Seconds a Prefect server of the suite may take to answer once started: 90 s (the
# launcher's own deadline) ran out twice with three suites sharing this machine's 2 cores.
SERVER_START = 300
# Seconds to wait for the callback of a task of another service's stack (and in the
# client's tests): on a loaded machine the Prefect server's SQLite locks can hold a
# task's hand-off to Prefect back for minutes.
SLOW_CALLBACK = 180
# Seconds a launcher (`make run`'s) has to stop its processes once sent Ctrl-C.
LAUNCHER_STOP = 120
ACCESS_KEY = "test-access-key"
SLUG = "image-rotate"
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll until `check` returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class RunningStack:
    stack: Stack
    api: str
    prefect_api: str
    log_path: Path

    def process(self, name: str) -> Process:
        return next(p for p in self.stack.processes if p.name == name)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server, in a process of its own whose coverage is not measured: inside
    the suite's process, measured, each request cost 1.6 times the CPU, and the engine
    and the tests waited on its threads for the interpreter."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with (WORKDIR / "s3.log").open("ab") as log:
        s3 = Stack(environment(NOT_MEASURED), log=log)
        try:
            args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
            s3.start("s3", args, lambda: responds(endpoint), SERVER_START)
            s3_client(endpoint).create_bucket(Bucket=BUCKET)
            yield endpoint
        finally:
            s3.stop()


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=S3_SECRET,
        region_name="us-east-1",
    )


def start_suite_prefect_server(stack: Stack) -> Process | None:
    """The suite's Prefect server, in `stack`; its coverage is not measured (it runs
    Prefect's code, none of the project's)."""
    return start_prefect_server(stack.variant(**NOT_MEASURED), SERVER_START)


@pytest.fixture(scope="session")
def stack() -> Iterator[RunningStack]:
    log_path = WORKDIR / "stack.log"
    with log_path.open("ab") as log:
        env = environment()
        running = Stack(env, log=log)
        try:
            start_suite_prefect_server(running)
            start_worker(running, SLUG)
            start_api(running)
            yield RunningStack(
                running,
                api=f"http://127.0.0.1:{env['SERVICE_PORT']}",
                prefect_api=env["PREFECT_API_URL"],
                log_path=log_path,
            )
        finally:
            stopped: list[str] = []
            running.stop(say=stopped.append)
            log.flush()
            killed = [line for line in stopped if line.startswith("killed")]
            if killed:
                # Said, not failed: the stop still left nothing behind, but a minute went,
                # and the log (with the worker's threads, dumped before the kill) goes
                # with the suite's folder.
                tail = log_path.read_text(errors="replace").splitlines()[-60:]
                warnings.warn("; ".join(killed) + "\n" + "\n".join(tail), stacklevel=1)
            # Everything the stack wrote, once it has stopped (test_secrets.py scans what
            # it wrote up to then, and a test run alone has no test_secrets.py).
            leaked = files_holding(S3_SECRET.encode(), WORKDIR)
            assert not leaked, f"the S3 secret found in {leaked}"


def files_holding(secret: bytes, root: Path) -> list[Path]:
    """The files under `root` that hold `secret`, but for pytest's temporary folders (a
    test's own files)."""
    skipped = root / "pytest"
    return [
        path
        for path in root.rglob("*")
        if path.is_file() and skipped not in path.parents and secret in path.read_bytes()
    ]


@dataclass
class Engine:
    """pytest-httpserver playing the engine: records every callback PATCH it gets."""

    server: HTTPServer
    # Every PATCH body received, and those answered 2xx (the ones the engine took).
    updates: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    delivered: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def callback_url(self, task_id: str) -> str:
        return self.server.url_for(f"/tasks/{task_id}")

    def accept(self, task_id: str) -> None:
        """Answer every callback for `task_id` with 200, recording its body."""
        self.server.expect_request(f"/tasks/{task_id}", method="PATCH").respond_with_handler(
            self._recorder(task_id, lambda _: 200)
        )

    def answer(self, task_id: str, statuses: list[int]) -> None:
        """Answer the n-th callback with statuses[n] (the last one after that)."""
        self.server.expect_request(f"/tasks/{task_id}", method="PATCH").respond_with_handler(
            self._recorder(task_id, lambda n: statuses[min(n, len(statuses) - 1)])
        )

    def answer_by(self, task_id: str, status: Callable[[], int]) -> None:
        """Answer each callback with what `status()` says when it arrives."""
        self.server.expect_request(f"/tasks/{task_id}", method="PATCH").respond_with_handler(
            self._recorder(task_id, lambda _: status())
        )

    def _recorder(self, task_id: str, status_for: Callable[[int], int]) -> Any:
        from werkzeug import Request, Response

        def handle(request: Request) -> Response:
            received = self.updates.setdefault(task_id, [])
            received.append(json.loads(request.data))
            status = status_for(len(received) - 1)
            if status < 300:
                self.delivered.setdefault(task_id, []).append(received[-1])
            return Response(json.dumps({}), status=status, content_type="application/json")

        return handle

    def final(self, task_id: str, timeout: float = 60) -> dict[str, Any]:
        """The first terminal update the engine took for the task, waiting for it."""

        def terminal() -> dict[str, Any] | None:
            for update in self.delivered.get(task_id, []):
                if update["status"] in ("finished", "error"):
                    return update
            return None

        return wait_for(terminal, timeout, f"the final callback of task {task_id}")


@pytest.fixture
def engine(httpserver: HTTPServer) -> Engine:
    return Engine(httpserver)


@dataclass
class Client:
    """What the tests do as the engine: put inputs in S3, POST tasks, read statuses."""

    stack: RunningStack
    engine: Engine
    s3_endpoint: str

    def put(self, data: bytes, extension: str) -> str:
        """Store `data` under a new `<uuid4><extension>` key, as the engine does; the key."""
        key = f"{uuid.uuid4()}{extension}"
        self.s3_put(key, data)
        return key

    def s3_put(self, key: str, data: bytes) -> None:
        s3_client(self.s3_endpoint).put_object(Bucket=BUCKET, Key=key, Body=data)

    def find_flow_run(self, task_id: str) -> dict[str, Any] | None:
        """The task's flow run, read from Prefect's API; None before it is created."""
        runs = plain_http.post(
            f"{self.stack.prefect_api}/flow_runs/filter",
            json={"flow_runs": {"name": {"any_": [task_id]}}},
            timeout=10,
        ).json()
        assert len(runs) <= 1, runs
        return runs[0] if runs else None

    def flow_run(self, task_id: str) -> dict[str, Any]:
        run = self.find_flow_run(task_id)
        assert run is not None, f"no flow run for task {task_id}"
        return run

    def flow_run_id(self, task_id: str) -> str:
        return str(self.flow_run(task_id)["id"])

    def prefect(self, *args: str) -> None:
        """Run the `prefect` CLI against the suite's server, as an operator would (its
        coverage not measured: it runs Prefect's code, about 5 CPU-s a call measured)."""
        done = subprocess.run(
            [sys.executable, "-m", "prefect", "--no-prompt", *args],
            cwd=ROOT,
            env={**os.environ, **self.stack.stack.env, **NOT_MEASURED},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    def get(self, key: str) -> bytes:
        body: bytes = s3_client(self.s3_endpoint).get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return body

    def body(
        self, data_in: list[str], task_id: str | None = None, s3_host: str = ""
    ) -> dict[str, Any]:
        """A ServiceTask shaped exactly like the engine's (CONTRACT.md §3)."""
        task_id = task_id or str(uuid.uuid4())
        return {
            "s3_access_key_id": ACCESS_KEY,
            "s3_secret_access_key": S3_SECRET,
            "s3_region": "us-east-1",
            "s3_host": s3_host or self.s3_endpoint,
            "s3_bucket": BUCKET,
            "task": {
                "created_at": "2026-11-27T22:17:55.280592",
                "updated_at": "2026-11-27T22:18:46.770513",
                "data_in": data_in,
                "data_out": None,
                "status": "pending",
                "service_id": str(uuid.uuid4()),
                "pipeline_execution_id": None,
                "pipeline_step_id": None,
                "error_message": None,
                "id": task_id,
            },
            "callback_url": self.engine.callback_url(task_id),
        }

    def submit(self, data_in: list[str], s3_host: str = "", accept: bool = True) -> str:
        """POST a task and check it is accepted; its id."""
        body = self.body(data_in, s3_host=s3_host)
        task_id: str = body["task"]["id"]
        if accept:
            self.engine.accept(task_id)
        response = plain_http.post(f"{self.stack.api}/compute", json=body, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "Task added to the queue"}
        return task_id

    def status(self, task_id: str) -> httpx.Response:
        return plain_http.get(f"{self.stack.api}/tasks/{task_id}/status", timeout=10)


@pytest.fixture
def client(stack: RunningStack, engine: Engine, s3_endpoint: str) -> Client:
    return Client(stack, engine, s3_endpoint)


def image_bytes(image_format: str, size: tuple[int, int] = (64, 32)) -> bytes:
    """An image whose four quadrants have different colours, so rotation is visible."""
    width, height = size
    image = Image.new("RGB", size, (255, 255, 255))
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    for index, colour in enumerate(colours):
        left = (index % 2) * width // 2
        top = (index // 2) * height // 2
        image.paste(colour, (left, top, left + width // 2, top + height // 2))
    out = io.BytesIO()
    image.save(out, format=image_format)
    return out.getvalue()


@contextmanager
def extra_api(client: Client, **overrides: str) -> Iterator[tuple[Stack, str]]:
    """Another API process over the same worker and S3, with some settings changed."""
    port = free_port()
    env = environment({"SERVICE_PORT": str(port), **NOT_MEASURED, **overrides})
    with (WORKDIR / "stack.log").open("ab") as log:
        stack = Stack(env, log=log)
        try:
            start_api(stack)
            yield stack, f"http://127.0.0.1:{port}"
        finally:
            stack.stop()


@contextmanager
def service_stack(
    module: str, overrides: Mapping[str, str] | None = None, log_name: str = "stack.log"
) -> Iterator[RunningStack]:
    """A worker and an API of another service, over the suite's Prefect server: its own
    deployment, work pool, port and journal; `overrides` change its settings, and its
    processes log to `log_name` in the suite's folder."""
    slug = load_service(module).description.slug
    port = free_port()
    env = environment(
        {
            "SERVICE_MODULE": module,
            "SERVICE_PORT": str(port),
            "SERVICE_URL": f"http://127.0.0.1:{port}",
            "INTAKE_PATH": str(WORKDIR / f"intake-{slug}.db"),
            # Lighter on the shared Prefect server than the main stack's worker.
            "WORKER_POLL_INTERVAL": "2",
            "WORKER_HEARTBEAT_SECONDS": "5",
            **NOT_MEASURED,
            **(overrides or {}),
        }
    )
    log_path = WORKDIR / log_name
    with log_path.open("ab") as log:
        stack = Stack(env, log=log)
        try:
            start_worker(stack, slug)
            start_api(stack)
            yield RunningStack(stack, api_url(env), env["PREFECT_API_URL"], log_path)
        finally:
            stack.stop()


def session(sid: int) -> list[str]:
    """The processes of session `sid` still running (zombies have ended), as
    `pid command` lines."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended meanwhile
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(f"{entry.name} {command}")
    return members


def kill_session(sid: int) -> None:
    """SIGKILL every process of session `sid` still running."""
    for member in session(sid):
        with suppress(ProcessLookupError):  # ended meanwhile
            os.kill(int(member.split()[0]), signal.SIGKILL)


@contextmanager
def launcher(**overrides: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`make run`'s launcher (over the suite's Prefect server) with some settings changed,
    and what it printed once ready; killed afterwards if it is still running."""
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.local"],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **NOT_MEASURED, **overrides},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        # Its processes in a session of its own, so that none outlives the test.
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        printed = ""
        while "Ctrl-C" not in printed:
            line = process.stdout.readline()  # the launcher gives up after its own deadlines
            assert line, f"the launcher exited: {printed}"
            printed += line
        yield process, printed
    finally:
        if process.poll() is None:
            # A test that failed with it still running: stopped as Ctrl-C stops it, its
            # processes in order (a SIGKILL to it alone left its Prefect server and
            # worker running).
            process.send_signal(signal.SIGINT)
            with suppress(subprocess.TimeoutExpired):
                process.wait(LAUNCHER_STOP)
        kill_session(process.pid)  # any that outlived it, a hung one included
        if process.poll() is None:
            process.wait()


@pytest.fixture(scope="module")
def other_service(stack: RunningStack, request: pytest.FixtureRequest) -> Iterator[RunningStack]:
    """The stack of the service the test module names in SERVICE_MODULE, up while that
    module's tests run, with the settings it names in STACK_SETTINGS (if any), logging to
    STACK_LOG (if named)."""
    module = request.module
    with service_stack(
        module.SERVICE_MODULE,
        getattr(module, "STACK_SETTINGS", None),
        getattr(module, "STACK_LOG", "stack.log"),
    ) as running:
        yield running


@pytest.fixture
def other_client(other_service: RunningStack, engine: Engine, s3_endpoint: str) -> Client:
    """A Client of that service's stack."""
    return Client(other_service, engine, s3_endpoint)


def run_client(*args: str) -> tuple[int, str]:
    """The client's exit status and everything it printed (waiting for the task's end as
    long as the suite waits for a callback, unless `args` say otherwise)."""
    out = io.StringIO()
    return client_main(["submit", "--timeout", str(SLOW_CALLBACK), *args], out=out), out.getvalue()


def suite_s3_flags(s3_endpoint: str) -> list[str]:
    """The client's flags for the suite's S3."""
    return ["--s3-endpoint", s3_endpoint, "--s3-bucket", BUCKET, "--s3-access-key-id", ACCESS_KEY]


async def run_an_hour_ahead(client: PrefectClient) -> FlowRun:
    """A run of the deployment that the suite's worker leaves alone (due in an hour)."""
    deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/{deployment_name(SLUG)}")
    parameters = RunParameters(
        task_id=uuid.uuid4(),
        data_in=[],
        s3=S3Target(host="http://127.0.0.1:1", region="r", bucket="b", sealed_credentials="x"),
        callback_url="http://127.0.0.1:1",
    )
    return await client.create_flow_run_from_deployment(
        deployment.id,
        parameters=parameters.as_prefect_parameters(),
        state=Scheduled(scheduled_time=now("UTC") + timedelta(hours=1)),
    )


def left_by_a_dead_worker(stack: RunningStack, left: State[Any]) -> list[State[Any]]:
    """A run claimed and Running, then put in `left` as a worker (or a reaper) that died
    between two state changes would leave it; its states once the suite's worker's sweep
    has scheduled it again (within a minute), oldest first. The run is deleted."""

    async def scenario() -> list[State[Any]]:
        with temporary_settings({PREFECT_API_URL: stack.prefect_api}):
            async with get_client() as client:
                run = await run_an_hour_ahead(client)
                try:
                    assert await claim(client, run.id) is not None
                    await client.set_flow_run_state(run.id, Running(), force=True)
                    await client.set_flow_run_state(run.id, left, force=True)

                    async def rescheduled() -> list[State[Any]]:
                        while True:
                            states = await client.read_flow_run_states(run.id)
                            if any(state.name == "AwaitingRetry" for state in states):
                                return states
                            await asyncio.sleep(0.2)  # polled until the deadline below

                    return await asyncio.wait_for(rescheduled(), timeout=60)
                finally:
                    await client.delete_flow_run(run.id)

    return asyncio.run(scenario())


async def idle_worker(client: PrefectClient, name: str) -> Worker:
    """A worker of the deployment, one slot, not serving: a test drives its steps."""
    deployment = await client.read_deployment_by_name(f"{FLOW_NAME}/{deployment_name(SLUG)}")
    return Worker(
        client,
        pool=SLUG,
        deployment_id=deployment.id,
        name=name,
        limit=1,
        poll_interval=600,
        heartbeat_seconds=1,
        shutdown_grace=0,
        redelivery=Redelivery(delay=1, max_delay=1, within=3600),
    )


def task_runs(client: Client, task_id: str) -> list[dict[str, Any]]:
    """The task runs of the task's flow run, in the order they started."""
    runs: list[dict[str, Any]] = plain_http.post(
        f"{client.stack.prefect_api}/task_runs/filter",
        json={"flow_runs": {"id": {"any_": [client.flow_run_id(task_id)]}}},
        timeout=10,
    ).json()
    return sorted(runs, key=lambda run: run["start_time"] or run["expected_start_time"])


@contextmanager
def only_an_extra_worker(client: Client, **settings: str) -> Iterator[Process]:
    """A second worker (with `settings` over the suite's) that alone takes new runs: the
    suite's worker is paused until exit.

    The suite's worker is never killed, so what it measured for coverage is kept.
    """
    main = client.stack.process("worker")
    with (WORKDIR / "stack.log").open("ab") as log:
        overrides = {"WORKER_NAME": f"extra-{uuid.uuid4()}", **NOT_MEASURED, **settings}
        extra = Stack(environment(overrides), log=log)
        try:
            os.kill(main.popen.pid, signal.SIGSTOP)
            yield start_worker(extra, SLUG)
        finally:
            os.kill(main.popen.pid, signal.SIGCONT)
            extra.stop()
