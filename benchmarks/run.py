"""`make bench`: how fast the service accepts and runs tasks, against its targets.

    .venv/bin/python -m benchmarks.run [--tasks 200] [--repeat 3] [--out .data/bench]

Starts everything on 127.0.0.1 with free ports: a fresh Prefect server on SQLite (in a
temporary PREFECT_HOME), moto's S3 server, a stand-in engine that records when each
task's callback arrives, then the service's worker and API by the same code as `make run`
(`deployments.local`), with `.env`'s defaults except for ports, paths, a fresh sealing
key, MAX_TASKS (= --tasks unless --max-tasks) and LOG_LEVEL=info. The children's output
goes to `<out>/service.log`. Every task has two inputs: a 256x256 PNG of its own (random
noise over gradients, uploaded before the task is timed, so that every task is processed:
no task finds another's result kept) and "90".

Each repetition runs, after one unmeasured warm-up task:

1. single task: --single tasks one after another, POST sent → final callback received,
   each once Prefect has ended the previous run (alone), then each right after the
   previous callback (back to back, as a pipeline's next step comes);
2. burst, pooled: --tasks concurrent POSTs, each on a keep-alive connection opened
   beforehand (as a pooled client in steady use has); the answer time of each POST. The
   same tasks are the throughput case (first POST → last callback) and the memory case
   (RSS summed over every process of the service — Prefect server, worker and its
   children, API — every 0.2 s; the largest sum);
3. burst, a new connection per POST with a 5 s timeout, as the engine does; the same
   figures;
4. baseline: the same tasks through the same processing code with no orchestration, in
   this process: S3 get, `services.image_rotate.process`, S3 put, callback PATCH, one
   after another and on 4 threads; the faster counts. The overhead ratio is the pooled
   burst's wall time over this one; beside it, the Prefect server's CPU seconds over that
   burst over the same baseline: the overhead the server's work alone sets, as it runs
   in one process. The baseline of the answer times is the same burst
   against a do-nothing ASGI app under uvicorn (`floor_app`): what the machine, uvicorn
   and the measuring client cost by themselves.

It prints one table (the median over repetitions, the target, the baseline) and writes the
same, with the machine and every repetition's raw values, to `<out>/bench.json`. It is a
measurement, not a test: missed targets do not change the exit status; a stack that does
not start does. Tasks that never got a `finished` callback are counted, not fatal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import io
import json
import logging
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import boto3
import httpx
from cryptography.fernet import Fernet
from moto.server import ThreadedMotoServer
from PIL import Image

from contract.description import FieldType
from contract.models import TaskStatus, TaskUpdate
from deployments.local import (
    ROOT,
    Stack,
    StartError,
    api_url,
    environment,
    free_port,
    responds,
    start_api,
    start_prefect_server,
    start_worker,
)
from services import image_rotate
from services.base import Blob

BUCKET = "bench"
ACCESS_KEY = "bench-access-key"
SECRET_KEY = "bench-secret-key"
SLUG = image_rotate.DESCRIPTION.slug
# What the engine gives /compute before it gives up on a submission.
ENGINE_TIMEOUT = 5.0
SAMPLE_INTERVAL = 0.2
BASELINE_THREADS = 4
# The API refreshes its count of unended runs (which /compute checks against MAX_TASKS)
# about once a second, and that count cannot be read from outside: after Prefect shows
# no unended run, give it this long, so a stale count does not reject the next burst.
FORWARDER_REFRESH = 1.5
UNENDED = ["SCHEDULED", "PENDING", "RUNNING", "CANCELLING"]


# --- measuring ----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile, interpolated between closest ranks; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Iterable[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def wait(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll `check` until true; False after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(roots: Mapping[str, int]) -> dict[str, list[int]]:
    """Each role's process and all its descendants (the worker's pool children, ...)."""
    children = _children()
    tree: dict[str, list[int]] = {}
    for role, root in roots.items():
        pids, todo = [], [root]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo.extend(children.get(pid, []))
        tree[role] = pids
    return tree


def rss_kib(pid: int) -> int:
    """Current resident memory of a process in KiB; 0 once it has exited."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its children it has reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime: fields 14-17 of proc(5), counted after the name.
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_by_role(roots: Mapping[str, int]) -> dict[str, float]:
    return {
        role: sum(cpu_seconds(pid) for pid in pids) for role, pids in process_tree(roots).items()
    }


def mb(kib: float) -> float:
    """KiB (what /proc reports) to MB of 10^6 bytes (what the targets say)."""
    return kib * 1024 / 1e6


class MemorySampler:
    """Sums the RSS of every process of the service every SAMPLE_INTERVAL, keeping the peak."""

    def __init__(self, roots: Mapping[str, int]) -> None:
        self._roots = dict(roots)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.samples = 0
        self.peak_kib = 0
        self.peak_by_role_kib: dict[str, int] = {}

    def _sample(self) -> None:
        while True:
            by_role = {
                role: sum(rss_kib(pid) for pid in pids)
                for role, pids in process_tree(self._roots).items()
            }
            self.samples += 1
            if sum(by_role.values()) > self.peak_kib:
                self.peak_kib = sum(by_role.values())
                self.peak_by_role_kib = by_role
            if self._stop.wait(SAMPLE_INTERVAL):
                return

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def unended_runs(prefect_api: str) -> int | None:
    """Flow runs Prefect has not ended; None if it cannot say right now."""
    try:
        response = httpx.post(
            f"{prefect_api}/flow_runs/count",
            json={"flow_runs": {"state": {"type": {"any_": UNENDED}}}},
            timeout=10,
        )
        response.raise_for_status()
        return int(response.json())
    except (httpx.HTTPError, ValueError):
        return None


# --- the stand-in engine and S3 -------------------------------------------------------


class Engine:
    """Answers every callback PATCH with 200 and records when each task's final one arrived."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        # task id -> (time.perf_counter() at arrival, status) of its first final callback
        self.final: dict[str, tuple[float, str]] = {}
        self.callbacks = 0
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, for the baseline's pooled client

            def do_PATCH(self) -> None:
                arrived = time.perf_counter()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                engine.record(self.path.rsplit("/", 1)[-1], arrived, str(body.get("status")))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                """Silent: a line per callback would bury the table."""

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default 5 would refuse connections in a burst
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def record(self, task_id: str, arrived: float, status: str) -> None:
        with self._changed:
            self.callbacks += 1
            if status in (TaskStatus.FINISHED, TaskStatus.ERROR):
                self.final.setdefault(task_id, (arrived, status))
            self._changed.notify_all()

    def wait_final(self, task_ids: Sequence[str], timeout: float) -> bool:
        """Wait until every task has had its final callback; False at the deadline."""
        with self._changed:
            return self._changed.wait_for(
                lambda: all(task_id in self.final for task_id in task_ids), timeout
            )

    def finished_at(self, task_id: str) -> float | None:
        """When the task's `finished` callback arrived; None if it ended otherwise or not."""
        final = self.final.get(task_id)
        return final[0] if final is not None and final[1] == TaskStatus.FINISHED else None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def input_png() -> bytes:
    """A 256x256 PNG with gradients and noise, so it compresses like a picture, not a blank."""
    size = (256, 256)
    red = Image.linear_gradient("L").resize(size)
    green = Image.radial_gradient("L").resize(size)
    blue = Image.effect_noise(size, 48)
    out = io.BytesIO()
    Image.merge("RGB", (red, green, blue)).save(out, format="PNG")
    return out.getvalue()


@cache
def s3_client(endpoint: str) -> Any:
    """One client per S3 (a task's image each is uploaded before the task is sent: a new
    client for each would cost more than the upload)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )


# --- the cases ------------------------------------------------------------------------


@dataclass
class Harness:
    """What the cases need: where things listen, and the two inputs every task uses."""

    engine: Engine
    s3_endpoint: str
    api: str
    floor: str  # the do-nothing app (floor_app)
    prefect_api: str
    roots: dict[str, int]
    image_key: str
    rotation_key: str
    task_timeout: float

    def fresh_image(self) -> str:
        """The key of a PNG no task has had yet, uploaded now."""
        key = f"{uuid.uuid4()}.png"
        s3_client(self.s3_endpoint).put_object(Bucket=BUCKET, Key=key, Body=input_png())
        return key

    def body(self, task_id: str) -> dict[str, Any]:
        """A ServiceTask shaped like the engine's, with an image of its own."""
        return {
            "s3_access_key_id": ACCESS_KEY,
            "s3_secret_access_key": SECRET_KEY,
            "s3_region": "us-east-1",
            "s3_host": self.s3_endpoint,
            "s3_bucket": BUCKET,
            "task": {
                "created_at": "2026-11-27T22:17:55.280592",
                "updated_at": "2026-11-27T22:18:46.770513",
                "data_in": [self.fresh_image(), self.rotation_key],
                "data_out": None,
                "status": "pending",
                "service_id": str(uuid.uuid4()),
                "pipeline_execution_id": None,
                "pipeline_step_id": None,
                "error_message": None,
                "id": task_id,
            },
            "callback_url": self.callback_url(task_id),
        }

    def callback_url(self, task_id: str) -> str:
        return f"{self.engine.url}/tasks/{task_id}"

    def unended_runs(self) -> int | None:
        return unended_runs(self.prefect_api)

    def settle(self) -> None:
        """Let the previous case's runs end, so each case starts on an idle service."""
        if not wait(lambda: self.unended_runs() == 0, self.task_timeout, interval=0.2):
            log(f"  warning: Prefect still has {self.unended_runs()} unended run(s)")
        time.sleep(FORWARDER_REFRESH)


@dataclass
class SingleResult:
    latencies_ms: list[float]
    p50_ms: float | None
    missing: int


def single_case(h: Harness, count: int, alone: bool) -> SingleResult:
    """Tasks one at a time: POST sent → final callback received.

    `alone`: each POST waits until Prefect has ended the previous run, whose last writes
    follow its callback; otherwise each POST follows the previous callback at once, as a
    pipeline's next step does.
    """
    latencies: list[float] = []
    missing = 0
    with httpx.Client(timeout=ENGINE_TIMEOUT) as client:
        for _ in range(count):
            if alone and not wait(lambda: h.unended_runs() == 0, h.task_timeout, 0.1):
                log("  warning: the previous run has not ended; the next task is not alone")
            task_id = str(uuid.uuid4())
            body = h.body(task_id)
            sent = time.perf_counter()
            try:
                accepted = client.post(f"{h.api}/compute", json=body).status_code
            except httpx.HTTPError:
                accepted = 0
            finished = None
            if accepted == 200 and h.engine.wait_final([task_id], h.task_timeout):
                finished = h.engine.finished_at(task_id)
            if finished is None:
                missing += 1
            else:
                latencies.append((finished - sent) * 1000)
    return SingleResult(latencies, percentile(latencies, 50), missing)


@dataclass
class Answer:
    sent: float
    ms: float
    status: int | None  # None: no answer (timeout, connection refused or reset)


# The bursts speak HTTP/1.1 over asyncio streams rather than through httpx: measured
# against a do-nothing server on this machine, 200 concurrent POSTs through one pooled
# httpx.AsyncClient took 3 s at p50 (its pool bookkeeping), and through a new
# httpx.AsyncClient each ~190 ms at p50 (building the clients and requests), which would
# be counted against the service. Raw requests cost the client microseconds each.
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _request(host: str, port: int, body: dict[str, Any], keep_alive: bool) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"POST /compute HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
    )
    return head.encode() + payload


async def _read_status(reader: asyncio.StreamReader) -> int:
    """Read one response; its status code."""
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def _post(host: str, port: int, request: bytes, connection: Connection | None) -> Answer:
    """Send one POST on `connection`, or on a new connection (closed after) if None."""
    sent = time.perf_counter()
    status: int | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(ENGINE_TIMEOUT):
            reader, writer = connection or await asyncio.open_connection(host, port)
            writer.write(request)
            status = await _read_status(reader)
    except (OSError, TimeoutError, ValueError, IndexError, asyncio.IncompleteReadError):
        pass  # no answer: counted as not 200
    answer = Answer(sent, (time.perf_counter() - sent) * 1000, status)
    if connection is None and writer is not None:
        writer.close()
    return answer


async def _submit(api: str, bodies: list[dict[str, Any]], pooled: bool) -> list[Answer]:
    parts = urlsplit(api)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    # Built before the clock starts, so only sending and answering are timed.
    requests = [_request(host, port, body, keep_alive=pooled) for body in bodies]
    pool: list[Connection | None] = [None] * len(bodies)
    if pooled:
        # A pooled client in steady use has its connections open already: open one per
        # concurrent POST now (uvicorn keeps idle ones 5 s), so the burst measures
        # answers, not handshakes. One that fails to open is opened again by its POST.
        opened = await asyncio.gather(
            *(asyncio.open_connection(host, port) for _ in bodies), return_exceptions=True
        )
        pool = [None if isinstance(conn, BaseException) else conn for conn in opened]
    # The client's own garbage collection would pause every answer it is timing (this
    # process holds moto's server); timeit leaves it off for the same reason.
    gc.collect()
    gc.disable()
    try:
        return await asyncio.gather(
            *(_post(host, port, req, conn) for req, conn in zip(requests, pool, strict=True))
        )
    finally:
        gc.enable()
        for conn in pool:
            if conn is not None:
                conn[1].close()


async def floor_app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[dict[str, Any]]],
    send: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """A do-nothing ASGI app answering like /compute: the floor of the answer times.

    Served by uvicorn as the API is, in its own process, it shows how much of a burst's
    answer time is this machine, uvicorn and the measuring client rather than the service.
    """
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"status":"Task added to the queue"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class FloorResult:
    answer_ms: list[float]
    p50_ms: float | None
    p99_ms: float | None


def floor_case(h: Harness, n: int, pooled: bool) -> FloorResult:
    """The same burst against the do-nothing app."""
    answers = asyncio.run(_submit(h.floor, [h.body(str(uuid.uuid4())) for _ in range(n)], pooled))
    times = [answer.ms for answer in answers]
    return FloorResult([round(ms, 2) for ms in times], percentile(times, 50), percentile(times, 99))


@dataclass
class BurstResult:
    client: str
    answer_ms: list[float]
    statuses: list[int | None]
    p50_ms: float | None
    p99_ms: float | None
    rejected: int  # any answer but 200, including none within ENGINE_TIMEOUT
    finished: int
    missing: int  # accepted but no `finished` callback
    wall_s: float | None  # first POST sent → last `finished` callback
    tasks_per_s: float | None
    peak_rss_mb: float
    peak_rss_by_role_mb: dict[str, float]
    rss_samples: int
    cpu_s_by_role: dict[str, float]
    # Per flow run: when Prefect recorded its last task run, after the run's end (s).
    task_run_lag_s: list[float] = field(default_factory=list)
    # Flow runs whose stages were not all recorded within TASK_RUNS_RECORDED.
    task_runs_unrecorded: int = 0


# Stages per flow run, and how long a burst's task runs are waited for once it ends.
STAGES = 4
TASK_RUNS_RECORDED = 60.0


def _paged(url: str, body: dict[str, Any], page: int = 200) -> list[dict[str, Any]]:
    """Every record of one of Prefect's `/filter` endpoints."""
    records: list[dict[str, Any]] = []
    while True:
        batch = httpx.post(url, json={**body, "limit": page, "offset": len(records)}, timeout=30)
        batch.raise_for_status()
        records += batch.json()
        if len(batch.json()) < page:
            return records


def task_run_lags(h: Harness, task_ids: Sequence[str]) -> tuple[list[float], int]:
    """How long after each flow run's end Prefect had recorded the last of its task runs
    (its recorder writes them from the worker's events), from the server's own times: the
    flow run's `end_time` and the task runs' `updated`. Waits until every run of the burst
    has its four stages recorded as ended, or TASK_RUNS_RECORDED s; the lags, and how many
    runs were still short of them."""
    names = {"flow_runs": {"name": {"any_": list(task_ids)}}}

    def recorded() -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
        runs = _paged(f"{h.prefect_api}/flow_runs/filter", names)
        stages: dict[str, list[dict[str, Any]]] = {run["id"]: [] for run in runs}
        for task_run in _paged(f"{h.prefect_api}/task_runs/filter", names):
            if task_run["state_type"] in ("COMPLETED", "FAILED", "CRASHED"):
                stages.setdefault(task_run["flow_run_id"], []).append(task_run)
        return runs, stages

    def complete() -> bool:
        runs, stages = recorded()
        return all(len(stages[run["id"]]) >= STAGES for run in runs)

    wait(complete, TASK_RUNS_RECORDED, interval=0.5)
    runs, stages = recorded()
    lags = [
        (
            max(_at(task_run["updated"]) for task_run in stages[run["id"]]) - _at(run["end_time"])
        ).total_seconds()
        for run in runs
        if run["end_time"] and len(stages[run["id"]]) >= STAGES
    ]
    return lags, len(task_ids) - len(lags)


def _at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def burst_case(h: Harness, n: int, pooled: bool) -> BurstResult:
    """n tasks POSTed at once: answer times, then the wall time to their last callback."""
    ids = [str(uuid.uuid4()) for _ in range(n)]
    bodies = [h.body(task_id) for task_id in ids]
    cpu_before = cpu_by_role(h.roots)
    with MemorySampler(h.roots) as memory:
        answers = asyncio.run(_submit(h.api, bodies, pooled))
        accepted = [tid for tid, answer in zip(ids, answers, strict=True) if answer.status == 200]
        h.engine.wait_final(accepted, h.task_timeout)
    cpu_after = cpu_by_role(h.roots)
    lags, unrecorded = task_run_lags(h, accepted)
    done = [at for tid in accepted if (at := h.engine.finished_at(tid)) is not None]
    wall = max(done) - min(answer.sent for answer in answers) if done else None
    times = [answer.ms for answer in answers]
    return BurstResult(
        client="pooled" if pooled else "new connection per POST",
        answer_ms=[round(ms, 2) for ms in times],
        statuses=[answer.status for answer in answers],
        p50_ms=percentile(times, 50),
        p99_ms=percentile(times, 99),
        rejected=n - len(accepted),
        finished=len(done),
        missing=len(accepted) - len(done),
        wall_s=wall,
        tasks_per_s=len(done) / wall if wall else None,
        peak_rss_mb=mb(memory.peak_kib),
        peak_rss_by_role_mb={role: mb(kib) for role, kib in memory.peak_by_role_kib.items()},
        rss_samples=memory.samples,
        cpu_s_by_role={
            role: round(cpu_after.get(role, 0.0) - used, 2) for role, used in cpu_before.items()
        },
        task_run_lag_s=[round(lag, 3) for lag in lags],
        task_runs_unrecorded=unrecorded,
    )


@dataclass
class BaselineResult:
    sequential_s: float | None
    threaded_s: float | None
    wall_s: float | None  # the faster of the two
    per_task_ms: float | None  # sequential, per task
    tasks_per_s: float | None
    missing: int
    errors: list[str]


def baseline_case(h: Harness, n: int, s3: Any, http: httpx.Client) -> BaselineResult:
    """The same work with no orchestration: S3 get, process, S3 put, PATCH; in this process."""
    errors: list[str] = []

    def one(task_id: str) -> None:
        try:
            image = s3.get_object(Bucket=BUCKET, Key=h.image_key)["Body"].read()
            rotation = s3.get_object(Bucket=BUCKET, Key=h.rotation_key)["Body"].read()
            result = image_rotate.process(
                {
                    "image": Blob(image, FieldType.IMAGE_PNG),
                    "rotation": Blob(rotation, FieldType.TEXT_PLAIN),
                }
            )["result"]
            key = f"{uuid.uuid4()}.png"
            s3.put_object(Bucket=BUCKET, Key=key, Body=result.data, ContentType=result.type.value)
            update = TaskUpdate(status=TaskStatus.FINISHED, data_out=[key])
            response = http.patch(h.callback_url(task_id), json=update.model_dump(mode="json"))
            response.raise_for_status()
        except Exception as error:  # counted as missing, like a task the service lost
            errors.append(f"{type(error).__name__}: {error}")

    def timed(run: Callable[[list[str]], object]) -> tuple[float | None, int]:
        ids = [str(uuid.uuid4()) for _ in range(n)]
        start = time.perf_counter()
        run(ids)  # every PATCH has been answered, so the engine has recorded it
        done = [at for tid in ids if (at := h.engine.finished_at(tid)) is not None]
        return (max(done) - start if done else None), n - len(done)

    def sequential(ids: list[str]) -> None:
        for task_id in ids:
            one(task_id)

    def threaded(ids: list[str]) -> None:
        with ThreadPoolExecutor(BASELINE_THREADS) as pool:
            list(pool.map(one, ids))

    sequential_s, missing_sequential = timed(sequential)
    threaded_s, missing_threaded = timed(threaded)
    wall = min((s for s in (sequential_s, threaded_s) if s is not None), default=None)
    return BaselineResult(
        sequential_s=sequential_s,
        threaded_s=threaded_s,
        wall_s=wall,
        per_task_ms=sequential_s / n * 1000 if sequential_s is not None else None,
        tasks_per_s=n / wall if wall else None,
        missing=missing_sequential + missing_threaded,
        errors=errors[:10],
    )


@dataclass
class Repetition:
    single: SingleResult
    single_back_to_back: SingleResult
    burst_pooled: BurstResult
    burst_new_connection: BurstResult
    baseline: BaselineResult
    floor_pooled: FloorResult
    floor_new_connection: FloorResult
    overhead_ratio: float | None = field(default=None)


# --- the report -----------------------------------------------------------------------


@dataclass
class Figure:
    key: str
    name: str
    unit: str
    measured: float | None
    target: tuple[str, float] | None  # ("<=", 50.0): the measured value must satisfy it
    baseline: float | None = None

    @property
    def met(self) -> bool | None:
        if self.target is None or self.measured is None:
            return None
        op, limit = self.target
        return self.measured <= limit if op == "<=" else self.measured >= limit


def cpu_ms_per_run(rep: Repetition, role: str) -> float | None:
    """A process's CPU over the pooled burst, per flow run that finished."""
    burst = rep.burst_pooled
    cpu = burst.cpu_s_by_role.get(role)
    return cpu * 1000 / burst.finished if cpu is not None and burst.finished else None


def server_cpu_ratio(rep: Repetition) -> float | None:
    """The overhead the Prefect server's own work sets as a floor: it is one process (on
    SQLite Prefect refuses more), so its CPU over the pooled burst is wall time at least."""
    cpu = rep.burst_pooled.cpu_s_by_role.get("prefect_server")
    if cpu is None or not rep.baseline.wall_s:
        return None
    return cpu / rep.baseline.wall_s


def figures(reps: Sequence[Repetition], tasks: int) -> list[Figure]:
    def med(pick: Callable[[Repetition], float | None]) -> float | None:
        return median(pick(rep) for rep in reps)

    pooled = [rep.burst_pooled for rep in reps]
    fresh = [rep.burst_new_connection for rep in reps]
    missing = sum(
        rep.single.missing
        + rep.single_back_to_back.missing
        + rep.burst_pooled.missing
        + rep.burst_new_connection.missing
        + rep.baseline.missing
        for rep in reps
    )
    return [
        Figure(
            "burst_pooled_p50_ms",
            f"/compute answer p50, burst of {tasks}, pooled client",
            "ms",
            median(b.p50_ms for b in pooled),
            None,
            med(lambda rep: rep.floor_pooled.p50_ms),
        ),
        Figure(
            "burst_pooled_p99_ms",
            f"/compute answer p99, burst of {tasks}, pooled client",
            "ms",
            median(b.p99_ms for b in pooled),
            ("<=", 50),
            med(lambda rep: rep.floor_pooled.p99_ms),
        ),
        Figure(
            "burst_pooled_rejected",
            "  POSTs not answered 200, pooled client",
            "",
            median(b.rejected for b in pooled),
            ("<=", 0),
        ),
        Figure(
            "burst_new_p50_ms",
            f"/compute answer p50, burst of {tasks}, new connection per POST",
            "ms",
            median(b.p50_ms for b in fresh),
            None,
            med(lambda rep: rep.floor_new_connection.p50_ms),
        ),
        Figure(
            "burst_new_p99_ms",
            f"/compute answer p99, burst of {tasks}, new connection per POST",
            "ms",
            median(b.p99_ms for b in fresh),
            ("<=", ENGINE_TIMEOUT * 1000),
            med(lambda rep: rep.floor_new_connection.p99_ms),
        ),
        Figure(
            "burst_new_rejected",
            "  POSTs not answered 200, new connection per POST",
            "",
            median(b.rejected for b in fresh),
            ("<=", 0),
        ),
        Figure(
            "single_p50_ms",
            "one task alone, POST sent -> final callback, p50",
            "ms",
            med(lambda rep: rep.single.p50_ms),
            ("<=", 250),
            med(lambda rep: rep.baseline.per_task_ms),
        ),
        Figure(
            "single_back_to_back_p50_ms",
            "  the same, each POST right after the previous callback, p50",
            "ms",
            med(lambda rep: rep.single_back_to_back.p50_ms),
            None,
            med(lambda rep: rep.baseline.per_task_ms),
        ),
        Figure(
            "wall_s",
            f"{tasks} tasks at once, first POST -> last callback (pooled)",
            "s",
            median(b.wall_s for b in pooled),
            None,
            med(lambda rep: rep.baseline.wall_s),
        ),
        Figure(
            "throughput_tps",
            f"throughput, {tasks} tasks at once (pooled)",
            "tasks/s",
            median(b.tasks_per_s for b in pooled),
            (">=", 20),
            med(lambda rep: rep.baseline.tasks_per_s),
        ),
        Figure(
            "throughput_new_tps",
            f"throughput, {tasks} tasks at once (new connection per POST)",
            "tasks/s",
            median(b.tasks_per_s for b in fresh),
            (">=", 20),
            med(lambda rep: rep.baseline.tasks_per_s),
        ),
        Figure(
            "peak_rss_mb",
            f"peak memory, every process of the service, during the {tasks}",
            "MB",
            med(
                lambda rep: max(rep.burst_pooled.peak_rss_mb, rep.burst_new_connection.peak_rss_mb)
            ),
            ("<=", 600),
        ),
        Figure(
            "overhead_ratio",
            "orchestration overhead: wall time / baseline wall time",
            "x",
            med(lambda rep: rep.overhead_ratio),
            ("<=", 3),
        ),
        Figure(
            "server_cpu_ratio",
            "  the Prefect server's CPU over that burst / baseline wall time",
            "x",
            med(server_cpu_ratio),
            None,
        ),
        Figure(
            "worker_cpu_ms_per_run",
            "  the worker's CPU over that burst, per flow run",
            "ms",
            med(lambda rep: cpu_ms_per_run(rep, "worker")),
            ("<=", 60),
        ),
        Figure(
            "server_cpu_ms_per_run",
            "  the Prefect server's CPU over that burst, per flow run",
            "ms",
            med(lambda rep: cpu_ms_per_run(rep, "prefect_server")),
            ("<=", 100),
        ),
        Figure(
            "task_run_lag_max_s",
            "task runs recorded after their flow run's end, max (pooled)",
            "s",
            med(lambda rep: max(rep.burst_pooled.task_run_lag_s, default=None)),
            ("<=", 2),
        ),
        Figure(
            "task_runs_unrecorded",
            "  flow runs with a stage unrecorded a minute after the burst",
            "",
            med(lambda rep: rep.burst_pooled.task_runs_unrecorded),
            ("<=", 0),
        ),
        Figure(
            "tasks_missing",
            "tasks without a `finished` callback, all cases (total)",
            "",
            missing,
            ("<=", 0),
        ),
    ]


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit in ("", "MB"):
        text = f"{value:.0f}"
    elif unit in ("s", "x"):
        text = f"{value:.2f}"
    else:
        text = f"{value:.1f}"
    return f"{text} {unit}".rstrip()


def _target(figure: Figure) -> str:
    if figure.target is None:
        return ""
    op, limit = figure.target
    if figure.unit == "" and limit == 0:
        return "0"
    return f"{'≤' if op == '<=' else '≥'} {limit:g} {figure.unit}"


def table(rows: Sequence[Figure]) -> str:
    head = ("figure", "measured (median)", "target", "baseline", "met")
    cells = [
        (
            row.name,
            _number(row.measured, row.unit),
            _target(row),
            _number(row.baseline, row.unit) if row.baseline is not None else "",
            {True: "yes", False: "NO", None: ""}[row.met],
        )
        for row in rows
    ]
    return render(head, cells)


def render(head: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    """A plain-text table: the head, a rule, then a line per row."""
    widths = [max(len(line[i]) for line in [head, *cells]) for i in range(len(head))]
    lines = [
        " | ".join(text.ljust(width) for text, width in zip(line, widths, strict=True))
        for line in [head, *cells]
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    meminfo = Path("/proc/meminfo").read_text()
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in cpuinfo.splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    total_kib = next(
        int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal:")
    )
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_total_mb": round(mb(total_kib)),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "prefect": metadata.version("prefect"),
        "load_average_at_start": list(os.getloadavg()),
    }


def revision() -> dict[str, Any]:
    """The commit measured, and whether the tree had changes on top of it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "changed_files": None}
    return {"commit": commit, "changed_files": [line[3:] for line in changed]}


# --- running it -----------------------------------------------------------------------


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tasks", type=int, default=200, help="tasks per burst (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument(
        "--single", type=int, default=10, help="tasks one at a time per repetition (default 10)"
    )
    parser.add_argument(
        "--max-tasks", type=int, default=None, help="the service's MAX_TASKS (default: --tasks)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=300.0,
        help="seconds a case waits for its callbacks (default 300)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / ".data" / "bench",
        help="folder for bench.json and service.log (default .data/bench)",
    )
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.repeat < 1 or args.single < 1:
        parser.error("--tasks, --repeat and --single must be at least 1")
    return args


@dataclass
class Surroundings:
    """What the service talks to: the stand-in engine and S3 with the two inputs."""

    engine: Engine
    s3_endpoint: str
    image_key: str
    rotation_key: str


def surroundings(cleanup: contextlib.ExitStack) -> Surroundings:
    """The stand-in engine and moto's S3 server with the inputs; stopped by `cleanup`."""
    engine = Engine()
    cleanup.callback(engine.close)
    # moto's server logs a line per request through werkzeug's logger; that would bury the
    # progress lines, so quieten it while the benchmark runs.
    werkzeug = logging.getLogger("werkzeug")
    cleanup.callback(werkzeug.setLevel, werkzeug.level)
    werkzeug.setLevel(logging.WARNING)
    s3_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    moto.start()
    cleanup.callback(moto.stop)
    s3_endpoint = f"http://127.0.0.1:{s3_port}"
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    image_key, rotation_key = f"{uuid.uuid4()}.png", f"{uuid.uuid4()}.txt"
    s3.put_object(Bucket=BUCKET, Key=image_key, Body=input_png())
    s3.put_object(Bucket=BUCKET, Key=rotation_key, Body=b"90")
    return Surroundings(engine, s3_endpoint, image_key, rotation_key)


def service_environment(tmp: Path, max_tasks: int) -> dict[str, str]:
    """`.env`'s settings but for ports, paths, a fresh sealing key, MAX_TASKS and logs."""
    service_port = free_port()
    return environment(
        {
            "PREFECT_HOME": str(tmp / "prefect"),
            "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "SEALING_KEY": Fernet.generate_key().decode(),
            "INTAKE_PATH": str(tmp / "intake.db"),
            "SERVICE_MODULE": image_rotate.__name__,
            "SERVICE_HOST": "127.0.0.1",
            "SERVICE_PORT": str(service_port),
            "SERVICE_URL": f"http://127.0.0.1:{service_port}",
            # The worker counts its metrics as in production, on a port of its own.
            "WORKER_METRICS_PORT": str(free_port()),
            "MAX_TASKS": str(max_tasks),
            "ENGINE_URLS": "[]",
            "LOG_LEVEL": "info",
            "ENVIRONMENT": "test",
        }
    )


# Settings that bear on the figures, reported with them.
REPORTED_SETTINGS = (
    "MAX_TASKS",
    "WORKER_LIMIT",
    "WORKER_POLL_INTERVAL",
    "PROCESS_POOL_SIZE",
    "LOG_LEVEL",
    "ENVIRONMENT",
)


def start(
    args: argparse.Namespace, tmp: Path, service_log: IO[bytes], cleanup: contextlib.ExitStack
) -> tuple[Harness, dict[str, str]]:
    """S3, the engine, then the service's processes; each is stopped by `cleanup`."""
    around = surroundings(cleanup)
    env = service_environment(tmp, args.max_tasks or args.tasks)
    floor_port = free_port()
    floor = Stack(env, log=service_log)
    cleanup.callback(floor.stop)
    stack = Stack(env, log=service_log)
    cleanup.callback(stack.stop)
    log("starting the Prefect server, the worker and the API ...")
    start_prefect_server(stack)
    start_worker(stack, SLUG)
    start_api(stack)
    floor_url = f"http://127.0.0.1:{floor_port}"
    floor_args = ["--host", "127.0.0.1", "--port", str(floor_port), "--no-access-log"]
    floor.start(
        "floor",
        [sys.executable, "-m", "uvicorn", "benchmarks.run:floor_app", *floor_args],
        lambda: responds(floor_url),
        timeout=60,
    )
    names = {"prefect server": "prefect_server", "worker": "worker", "api": "api"}
    harness = Harness(
        engine=around.engine,
        s3_endpoint=around.s3_endpoint,
        api=api_url(env),
        floor=floor_url,
        prefect_api=env["PREFECT_API_URL"].rstrip("/"),
        roots={names[p.name]: p.popen.pid for p in stack.processes},
        image_key=around.image_key,
        rotation_key=around.rotation_key,
        task_timeout=args.timeout,
    )
    return harness, {name: env.get(name, "") for name in REPORTED_SETTINGS}


def measure(args: argparse.Namespace, h: Harness) -> list[Repetition]:
    s3 = s3_client(h.s3_endpoint)
    with httpx.Client(timeout=ENGINE_TIMEOUT) as http:
        # Unmeasured: the first task pays for imports and clients created on first use.
        log("warming up ...")
        single_case(h, 1, alone=True)
        baseline_case(h, 1, s3, http)
        reps = []
        for index in range(1, args.repeat + 1):
            log(f"repetition {index}/{args.repeat}: {args.single} single task(s), twice ...")
            h.settle()
            single = single_case(h, args.single, alone=True)
            back_to_back = single_case(h, args.single, alone=False)
            log(f"repetition {index}/{args.repeat}: burst of {args.tasks}, pooled client ...")
            h.settle()
            floor_pooled = floor_case(h, args.tasks, pooled=True)
            pooled = burst_case(h, args.tasks, pooled=True)
            log(f"repetition {index}/{args.repeat}: burst of {args.tasks}, new connections ...")
            h.settle()
            floor_fresh = floor_case(h, args.tasks, pooled=False)
            fresh = burst_case(h, args.tasks, pooled=False)
            log(f"repetition {index}/{args.repeat}: baseline ...")
            h.settle()
            baseline = baseline_case(h, args.tasks, s3, http)
            ratio = (
                pooled.wall_s / baseline.wall_s
                if pooled.wall_s is not None and baseline.wall_s
                else None
            )
            reps.append(
                Repetition(
                    single, back_to_back, pooled, fresh, baseline, floor_pooled, floor_fresh, ratio
                )
            )
            log(
                f"  single p50 {_number(single.p50_ms, 'ms')} "
                f"(back to back {_number(back_to_back.p50_ms, 'ms')}), "
                f"pooled p99 {_number(pooled.p99_ms, 'ms')}, "
                f"new-connection p99 {_number(fresh.p99_ms, 'ms')}, "
                f"{_number(pooled.tasks_per_s, 'tasks/s')}, "
                f"peak {_number(pooled.peak_rss_mb, 'MB')}, "
                f"baseline {_number(baseline.wall_s, 's')}"
            )
    return reps


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    about = {"machine": machine(), "revision": revision()}
    with contextlib.ExitStack() as cleanup:
        tmp = Path(
            cleanup.enter_context(
                tempfile.TemporaryDirectory(prefix="bench-", ignore_cleanup_errors=True)
            )
        )
        service_log = cleanup.enter_context((args.out / "service.log").open("wb"))
        try:
            harness, settings = start(args, tmp, service_log, cleanup)
        except StartError as error:
            log(f"could not start the service: {error}; see {args.out / 'service.log'}")
            return 1
        reps = measure(args, harness)
    rows = figures(reps, args.tasks)
    report = {
        **about,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "options": {"tasks": args.tasks, "repeat": args.repeat, "single": args.single},
        "service_settings": settings,
        "input_png_bytes": len(input_png()),
        "figures": [
            {
                "key": row.key,
                "name": row.name.strip(),
                "unit": row.unit,
                "measured": row.measured,
                "target": list(row.target) if row.target else None,
                "baseline": row.baseline,
                "met": row.met,
            }
            for row in rows
        ],
        "repetitions": [asdict(rep) for rep in reps],
    }
    (args.out / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    m = about["machine"]
    print(
        f"\n{m['nproc']} CPU(s) {m['cpu_model']}, {m['memory_total_mb']} MB; "
        f"{args.tasks} tasks, median of {args.repeat}; service settings {settings}\n"
    )
    print(table(rows))
    print(
        f"\nwritten to {args.out / 'bench.json'}; the service's output is in "
        f"{args.out / 'service.log'}"
    )
    return 0


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so every process started is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(main())
