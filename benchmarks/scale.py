"""`make bench-scale`: how throughput grows with workers in the distributed mode.

    .venv/bin/python -m benchmarks.scale [--workers 1 2 4] [--tasks 200] [--repeat 3]

Starts the distributed mode's cluster (`deployments.scaled`: PostgreSQL, a Prefect server
on it, one API) with the stand-in engine and S3 of `make bench` (`benchmarks.run`), then
for each worker count adds workers up to it (1, then 2, then 4 worker processes) and runs
--repeat bursts of --tasks tasks POSTed at once: throughput is tasks over the time from
the first POST to the last `finished` callback. Before each count's bursts, one unmeasured
burst warms the new workers. It prints a table (medians, and the ratio to the first
count) and writes it, with the machine and every burst's raw values, to
`<out>/scale.json`; the children's output goes to `<out>/service.log`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from benchmarks.run import (
    REPORTED_SETTINGS,
    BurstResult,
    Harness,
    burst_case,
    log,
    machine,
    median,
    render,
    revision,
    service_environment,
    surroundings,
)
from deployments.local import ROOT, Stack, StartError, free_port
from deployments.scaled import start_cluster


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts (1 2 4)"
    )
    parser.add_argument("--tasks", type=int, default=200, help="tasks per burst (default 200)")
    parser.add_argument("--repeat", type=int, default=3, help="bursts per count (default 3)")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds a burst waits (default 600)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / ".data" / "bench-scale", help="output folder"
    )
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.repeat < 1 or min(args.workers) < 1:
        parser.error("--workers, --tasks and --repeat must be at least 1")
    if args.workers != sorted(set(args.workers)):
        parser.error("--workers must grow: workers are added, never removed")
    return args


def table(rows: list[dict[str, float | int | None]]) -> str:
    head = ("workers", "tasks/s (median)", "x first", "wall s (median)", "missing")
    cells = [
        (
            str(row["workers"]),
            f"{row['tasks_per_s']:.2f}" if row["tasks_per_s"] is not None else "n/a",
            f"{row['ratio']:.2f}" if row["ratio"] is not None else "n/a",
            f"{row['wall_s']:.1f}" if row["wall_s"] is not None else "n/a",
            str(row["missing"]),
        )
        for row in rows
    ]
    return render(head, cells)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    about = {"machine": machine(), "revision": revision()}
    bursts: dict[int, list[BurstResult]] = {}
    with contextlib.ExitStack() as cleanup:
        tmp = Path(
            cleanup.enter_context(
                tempfile.TemporaryDirectory(prefix="bench-scale-", ignore_cleanup_errors=True)
            )
        )
        service_log = cleanup.enter_context((args.out / "service.log").open("wb"))
        around = surroundings(cleanup)
        env = service_environment(tmp, args.tasks)
        stack = Stack(env, log=service_log)
        cleanup.callback(stack.stop)
        log("starting PostgreSQL, the Prefect server on it and the API ...")
        try:
            cluster = start_cluster(stack, tmp / "cluster", api_ports=[free_port()], workers=[])
        except StartError as error:
            log(f"could not start the cluster: {error}; see {args.out / 'service.log'}")
            return 1
        h = Harness(
            engine=around.engine,
            s3_endpoint=around.s3_endpoint,
            api=cluster.apis[0],
            floor="",
            prefect_api=cluster.prefect_api.rstrip("/"),
            roots={},
            image_key=around.image_key,
            rotation_key=around.rotation_key,
            task_timeout=args.timeout,
        )
        host = socket.gethostname()
        for count in args.workers:
            while len(cluster.workers) < count:
                name = f"{host}-bench-{len(cluster.workers) + 1}"
                cluster.add_worker(name, metrics_port=free_port())
            h.roots = {p.name.replace(" ", "_"): p.popen.pid for p in stack.processes}
            log(f"{count} worker(s): warming up ...")
            h.settle()
            burst_case(h, min(args.tasks, 8 * count), pooled=True)
            bursts[count] = []
            for index in range(1, args.repeat + 1):
                h.settle()
                burst = burst_case(h, args.tasks, pooled=True)
                bursts[count].append(burst)
                shown = f"{burst.tasks_per_s:.2f}" if burst.tasks_per_s else "n/a"
                log(f"  burst {index}/{args.repeat}: {shown} tasks/s, {burst.missing} missing")
    first = median(b.tasks_per_s for b in bursts[args.workers[0]])
    rows: list[dict[str, float | int | None]] = []
    for count, results in bursts.items():
        rate = median(b.tasks_per_s for b in results)
        rows.append(
            {
                "workers": count,
                "tasks_per_s": rate,
                "ratio": rate / first if rate is not None and first else None,
                "wall_s": median(b.wall_s for b in results),
                "missing": sum(b.missing + b.rejected for b in results),
            }
        )
    report = {
        **about,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "options": {"workers": args.workers, "tasks": args.tasks, "repeat": args.repeat},
        "service_settings": {name: env.get(name, "") for name in REPORTED_SETTINGS},
        "rows": rows,
        "bursts": {str(count): [asdict(b) for b in results] for count, results in bursts.items()},
    }
    (args.out / "scale.json").write_text(json.dumps(report, indent=2) + "\n")
    m = about["machine"]
    print(
        f"\n{m['nproc']} CPU(s) {m['cpu_model']}, {m['memory_total_mb']} MB, load average at "
        f"start {m['load_average_at_start'][0]:.1f}; PostgreSQL; {args.tasks} tasks per burst, "
        f"median of {args.repeat}\n"
    )
    print(table(rows))
    print(f"\nwritten to {args.out / 'scale.json'}")
    return 0


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so every process started is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(main())
