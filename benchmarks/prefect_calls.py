"""`make bench-prefect`: the Prefect server's CPU for each call of a flow run's life.

    .venv/bin/python -m benchmarks.prefect_calls [--runs 200] [--repeat 3] [--out .data/bench]

Starts a fresh Prefect server on SQLite as `make run` does (`deployments.local`), creates
the service's work pool and deployment as the worker does, then, with nothing else
running, makes the calls the service makes for each flow run, one after another and for
--runs runs each: the API's bulk creation (100 runs a request), the worker's listing of
due runs (16 a request), its claim (Pending), the flow engine's update and Running, a
batch of ten log lines, and Completed. For each call it reads the server process's CPU
time before and after, from /proc. It prints the median per call over --repeat
repetitions, their sum per flow run, and how many flow runs a second that sum allows
the server, which is one process (Prefect refuses more on SQLite); it writes the same,
with every repetition, to `<out>/prefect_calls.json`.

Under `make bench`'s bursts the server spends about this sum per run: the bound of the
throughput on one machine. A measurement, not a test: it exits 0 unless the server does
not start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from prefect.client.orchestration import PrefectClient, get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Pending, Running

from api.orchestrator import BULK_CREATE_LIMIT, Orchestrator
from benchmarks.run import cpu_seconds, log, machine, render, revision
from core.runs import RunParameters, S3Target
from deployments.local import Stack, StartError, environment, free_port, start_prefect_server
from flows.deployment import ensure_deployment
from services import image_rotate
from services.base import load_service

LISTING_LIMIT = 16  # the worker's listing: its free slots and as many again (WORKER_LIMIT 8)
LOG_LINES = 10  # about what one run logs: four stages started and done, a summary
# Seconds the server is left alone before each call is timed: the events of the last
# one are written by its services meanwhile, not during the next.
SETTLE_SECONDS = 3.0
# (call, how many runs one call serves)
CALLS = (
    ("bulk creation", BULK_CREATE_LIMIT),
    ("listing of due runs", LISTING_LIMIT),
    ("claim (Pending)", 1),
    ("engine's update", 1),
    ("Running", 1),
    (f"{LOG_LINES} log lines", 1),
    ("Completed", 1),
)


def parameters(task_id: uuid.UUID) -> RunParameters:
    """A task's parameters as the API builds them (the credentials are sealed text)."""
    return RunParameters(
        task_id=task_id,
        data_in=[f"{uuid.uuid4()}.png", f"{uuid.uuid4()}.txt"],
        s3=S3Target(
            host="http://127.0.0.1:9000",
            region="eu-central-2",
            bucket="bench",
            sealed_credentials="g" * 312,  # a sealed token's length (AWS keys, a task, an S3 host)
        ),
        callback_url=f"http://127.0.0.1:8080/tasks/{task_id}",
    )


class Calls:
    """The service's calls for each of `runs` flow runs, one call at a time, each timed
    in the server's CPU."""

    def __init__(self, client: PrefectClient, server_pid: int, pool: str) -> None:
        self._client = client
        self._pid = server_pid
        self._pool = pool
        self._runs: list[uuid.UUID] = []

    async def _timed(self, calls: Sequence[Callable[[], Awaitable[Any]]]) -> float:
        """The server's CPU seconds over `calls`, made one after another."""
        await asyncio.sleep(SETTLE_SECONDS)
        before = cpu_seconds(self._pid)
        for call in calls:
            await call()
        return cpu_seconds(self._pid) - before

    async def repetition(self, orchestrator: Orchestrator, runs: int) -> dict[str, float]:
        """ms of server CPU per call, for each call of CALLS."""
        ids = [uuid.uuid4() for _ in range(runs)]
        batches = [ids[i : i + BULK_CREATE_LIMIT] for i in range(0, runs, BULK_CREATE_LIMIT)]

        async def create(batch: list[uuid.UUID]) -> None:
            created = await orchestrator.submit_all([parameters(task) for task in batch])
            self._runs.extend(run for run in created if isinstance(run, uuid.UUID))

        async def listing() -> None:
            await self._client.request(
                "POST",
                "/work_pools/{name}/get_scheduled_flow_runs",
                path_params={"name": self._pool},
                json={
                    "scheduled_before": str(datetime.now(UTC) + timedelta(seconds=1)),
                    "limit": LISTING_LIMIT,
                },
            )

        self._runs = []
        cpu = [await self._timed([partial(create, batch) for batch in batches])]
        if len(self._runs) != runs:
            raise RuntimeError(f"created {len(self._runs)} of {runs} flow runs")
        listings = max(1, runs // LISTING_LIMIT)
        cpu.append(await self._timed([listing] * listings))
        cpu.append(await self._timed(self._each(lambda run: self._state(run, Pending()))))
        cpu.append(
            await self._timed(
                self._each(
                    lambda run: self._client.update_flow_run(
                        run, flow_version="bench", infrastructure_pid="bench-worker"
                    )
                )
            )
        )
        cpu.append(await self._timed(self._each(lambda run: self._state(run, Running()))))
        cpu.append(await self._timed(self._each(self._logs)))
        cpu.append(await self._timed(self._each(lambda run: self._state(run, Completed()))))
        counts = [len(batches), listings, runs, runs, runs, runs, runs]
        return {
            name: 1000 * seconds / count
            for (name, _), seconds, count in zip(CALLS, cpu, counts, strict=True)
        }

    def _each(
        self, call: Callable[[uuid.UUID], Awaitable[Any]]
    ) -> list[Callable[[], Awaitable[Any]]]:
        return [partial(call, run) for run in self._runs]

    async def _state(self, run: uuid.UUID, state: Any) -> None:
        result = await self._client.set_flow_run_state(run, state)
        if result.status.value != "ACCEPT":
            raise RuntimeError(f"{state.name} of {run}: {result.status.value}")

    async def _logs(self, run: uuid.UUID) -> None:
        at = datetime.now(UTC).isoformat()
        await self._client.create_logs(
            [
                {
                    "name": "prefect.flow_runs",
                    "level": 20,
                    "message": f"process: 1 output(s), 111108 bytes ({line} ms)",
                    "timestamp": at,
                    "flow_run_id": str(run),
                }
                for line in range(LOG_LINES)
            ]
        )


async def measure(
    env: dict[str, str], server_pid: int, runs: int, repeat: int
) -> list[dict[str, float]]:
    service = load_service(image_rotate.__name__)
    pool = service.description.slug  # the default pool: this server has no other
    with temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}):
        async with get_client() as client:
            await ensure_deployment(client, service, pool)
            orchestrator = Orchestrator(client, service.description.slug)
            calls = Calls(client, server_pid, pool)
            reps = []
            for index in range(repeat):
                log(f"repetition {index + 1}/{repeat}: {runs} flow runs ...")
                reps.append(await calls.repetition(orchestrator, runs))
            return reps


def report(reps: Sequence[dict[str, float]]) -> tuple[str, dict[str, Any]]:
    per_call = {name: statistics.median(rep[name] for rep in reps) for name, _ in CALLS}
    per_run = {name: per_call[name] / serves for name, serves in CALLS}
    total = sum(per_run.values())
    rows = [
        (name, f"{per_call[name]:.1f} ms", f"{serves}", f"{per_run[name]:.1f} ms")
        for name, serves in CALLS
    ]
    rows.append(("per flow run, in all", "", "", f"{total:.1f} ms"))
    text = render(("call", "server CPU per call", "runs per call", "per flow run"), rows)
    text += f"\n\nat most {1000 / total:.1f} flow runs/s for one server process at one core"
    return text, {"per_call_ms": per_call, "per_run_ms": per_run, "per_run_total_ms": total}


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.prefect_calls",
        description=(__doc__ or "").split("\n\n", 1)[0],
    )
    parser.add_argument("--runs", type=int, default=200, help="flow runs per repetition")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--out", type=Path, default=Path(".data/bench"), help="output folder")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with contextlib.ExitStack() as cleanup:
        tmp = Path(
            cleanup.enter_context(
                tempfile.TemporaryDirectory(prefix="bench-prefect-", ignore_cleanup_errors=True)
            )
        )
        env = environment(
            {
                "PREFECT_HOME": str(tmp / "prefect"),
                "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "PREFECT_UI_ENABLED": "false",
            }
        )
        server_log = cleanup.enter_context((args.out / "prefect_server.log").open("wb"))
        stack = Stack(env, server_log)
        cleanup.callback(stack.stop)
        try:
            server = start_prefect_server(stack)
        except StartError as error:
            log(f"could not start the Prefect server: {error}")
            return 1
        if server is None:
            log(f"something already answers at {env['PREFECT_API_URL']}")
            return 1
        reps = asyncio.run(measure(env, server.popen.pid, args.runs, args.repeat))
    text, figures = report(reps)
    print(f"\n{text}")
    result = {
        "machine": machine(),
        "revision": revision(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "options": {"runs": args.runs, "repeat": args.repeat},
        **figures,
        "repetitions": reps,
    }
    out = args.out / "prefect_calls.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
