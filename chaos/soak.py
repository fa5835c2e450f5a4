"""`make soak`: the chaos stream without the nemesis, for DURATION s, minute by minute.

    .venv/bin/python -m chaos.soak [--duration 1800] [--rate 2 | --in-flight N] [--out .data/soak]

The stack of `make chaos` (chaos.stack), and engine-like tasks (a new connection per POST,
5 s timeout) at a steady rate, as `make chaos` sends them (--rate, 2 a second by
default): a day of traffic at a rate the service keeps up with, where any slowing down
or growth over time is the service's own. With --in-flight N, N tasks are kept in flight
instead, a task sent as soon as one ends, so that each minute's throughput is what the
service managed at saturation, not what was offered. It prints, for each minute: tasks
ended, throughput, the p99 of POST sent → terminal callback, and the peak memory (RSS
summed over the Prefect server, the workers with their children, and the API, sampled
every second). Then: the last three minutes against the first three (after the first,
the warm-up), the memory's growth, the Prefect database's size per task, and the checks
of `make chaos` over every task. Written to `<out>/soak.json` as well.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dotenv import dotenv_values

from benchmarks.run import machine, mb, percentile, process_tree, rss_kib, wait
from chaos.engine import Engine
from chaos.stack import ChaosStack, service_environment
from chaos.stream import ENGINE_TIMEOUT, Submission, TaskStream
from chaos.verdict import drained, holding, judge
from deployments.local import ROOT, StartError

MINUTE = 60.0
COMPARED = 3  # minutes at each end compared


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of stream")
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--rate", type=float, default=2.0, help="tasks a second (default 2)")
    load.add_argument(
        "--in-flight", type=int, default=None, help="tasks kept in flight, in place of --rate"
    )
    parser.add_argument(
        "--max-tasks",
        type=int,
        default=None,
        help="the service's MAX_TASKS (default: .env's; with --in-flight, twice it, so that "
        "runs Prefect has not yet marked ended after their callback do not fill it)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / ".data" / "soak")
    return parser.parse_args(argv)


def say(line: str) -> None:
    print(line, flush=True)


def ended(submission: Submission, engine: Engine) -> bool:
    """Answered and refused, or accepted and called back with its outcome."""
    if submission.answered is None:
        return False
    return not submission.accepted or bool(engine.terminal(submission.task_id))


class PeakMemory:
    """The largest RSS sum over the service's processes, each minute, sampled every second;
    and each part's own largest (a process with its children), to say which one grows."""

    def __init__(self, stack: ChaosStack, start: float) -> None:
        self._stack = stack
        self._start = start
        self.by_minute: dict[int, int] = {}
        self.by_part: dict[int, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            tree = process_tree(self._stack.roots())
            parts = {role: sum(rss_kib(pid) for pid in pids) for role, pids in tree.items()}
            minute = int((time.monotonic() - self._start) // MINUTE)
            self.by_minute[minute] = max(self.by_minute.get(minute, 0), sum(parts.values()))
            peaks = self.by_part.setdefault(minute, {})
            for role, kib in parts.items():
                peaks[role] = max(peaks.get(role, 0), kib)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def max_tasks(args: argparse.Namespace) -> int:
    if args.max_tasks:
        return int(args.max_tasks)
    if args.in_flight:
        return 2 * int(args.in_flight)
    return int(dotenv_values(ROOT / ".env")["MAX_TASKS"] or 0)


def keep_in_flight(stream: TaskStream, engine: Engine, count: int, until: float) -> None:
    """Send a task as soon as one of `count` in flight ends, until `until`."""
    start = time.monotonic()
    shown = 0
    outstanding: list[Submission] = []
    while time.monotonic() < until:
        seen = engine.received
        refused = any(s.answered is not None and not s.accepted for s in outstanding)
        outstanding = [s for s in outstanding if not ended(s, engine)]
        while len(outstanding) < count:
            outstanding.append(stream.send())
        # A refused task is sent again by its engine later, not at once: a slot it
        # frees waits for a callback, or half a second.
        engine.wait_beyond(seen, 0.5)
        if refused:
            time.sleep(0.5)
        if int((time.monotonic() - start) // MINUTE) > shown:
            shown += 1
            say(f"minute {shown}: {len(stream.submissions)} tasks sent")


def minutes(
    submissions: Sequence[Submission], engine: Engine, start: float, memory: PeakMemory
) -> list[dict[str, Any]]:
    """Each full minute: tasks ended in it, throughput, p99 latency, peak memory."""
    ended: dict[int, list[float]] = {}
    for s in submissions:
        taken = engine.terminal(s.task_id)
        if s.accepted and taken:
            ended.setdefault(int((taken[0].at - start) // MINUTE), []).append(taken[0].at - s.sent)
    rows = []
    for minute in sorted(memory.by_minute):
        latencies = ended.get(minute, [])
        p99 = percentile(latencies, 99)
        rows.append(
            {
                "minute": minute + 1,
                "ended": len(latencies),
                "tasks_per_s": round(len(latencies) / MINUTE, 2),
                "p99_s": round(p99, 2) if p99 is not None else None,
                "peak_rss_mb": round(mb(memory.by_minute[minute])),
                "peak_rss_mb_by_part": {
                    role: round(mb(kib)) for role, kib in memory.by_part[minute].items()
                },
            }
        )
    return rows


def size(path: Path) -> int:
    """Bytes of a file, or of every file under a folder; 0 if it is not there."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    secret = f"soak-secret-{os.urandom(8).hex()}"
    with contextlib.ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="soak-")))
        log_path = args.out / "service.log"
        log = cleanup.enter_context(log_path.open("wb"))
        env = service_environment(tmp, max_tasks=max_tasks(args), heartbeat=30, grace=30, extra={})
        stack = ChaosStack(env, log, secret)
        cleanup.callback(stack.stop)
        say("starting the stack ...")
        try:
            stack.start()
        except StartError as error:
            say(f"could not start: {error}; see {log_path}")
            return 2
        stream = TaskStream(stack)
        start = time.monotonic()
        memory = PeakMemory(stack, start)
        if args.in_flight:
            say(f"{args.in_flight} tasks in flight for {args.duration:g} s")
            keep_in_flight(stream, stack.engine, args.in_flight, start + args.duration)
        else:
            say(f"{args.rate:g} task(s) a second for {args.duration:g} s")
            sender = threading.Thread(
                target=stream.steady, args=(args.rate, start + args.duration, threading.Event())
            )
            sender.start()
            while sender.is_alive():
                sender.join(timeout=MINUTE)
                say(
                    f"minute {round((time.monotonic() - start) / MINUTE)}: "
                    f"{len(stream.submissions)} tasks sent"
                )
        memory.stop()
        wait(stream.settled, ENGINE_TIMEOUT * 3, interval=0.2)
        check = drained(stream.submissions, stack.engine, stack.prefect_api, stack.intake_path)
        wait(check, 600, interval=1.0)
        verdict = judge(stream.submissions, stack.engine, stack.s3_client(), stack.prefect_api)
        rows = minutes(stream.submissions, stack.engine, start, memory)
        full = [row for row in rows if row["minute"] <= args.duration // MINUTE]
        home = Path(env["PREFECT_HOME"])
        database = sum(size(home / name) for name in ("prefect.db", "prefect.db-wal"))
        accepted = sum(1 for s in stream.submissions if s.accepted)
        turned_away = len(stream.submissions) - accepted
        stream.close()
        stack.stop()
        log.flush()
        for path in holding(secret.encode(), [tmp, log_path]):
            verdict.fail(f"the S3 secret is in {path.name}")
        summary = summarise(full, database, accepted, size(Path(env["RESULT_STORAGE"])))
        summary["tasks_refused"] = turned_away
        text = render(full, summary, verdict.failures)
        say("\n" + text)
        report = {
            "machine": machine(),
            "options": vars(args) | {"out": str(args.out)},
            "minutes": rows,
            "summary": summary,
            "failures": verdict.failures,
        }
        (args.out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
        return 1 if verdict.failures else 0


def summarise(
    rows: Sequence[dict[str, Any]], database: int, accepted: int, results: int
) -> dict[str, Any]:
    """The last minutes against the first ones (the first minute is the warm-up)."""
    steady = list(rows[1:])
    first, last = steady[:COMPARED], steady[-COMPARED:]

    def mean(values: Sequence[dict[str, Any]], key: str) -> float | None:
        present = [float(v) for row in values if (v := row[key]) is not None]
        return statistics.mean(present) if present else None

    first_rate, last_rate = mean(first, "tasks_per_s"), mean(last, "tasks_per_s")
    first_mem = max((float(row["peak_rss_mb"] or 0) for row in first), default=None)
    last_mem = max((float(row["peak_rss_mb"] or 0) for row in last), default=None)
    roles = sorted({role for row in steady for role in row.get("peak_rss_mb_by_part", {})})

    def peak(values: Sequence[dict[str, Any]], role: str) -> int:
        return max((row.get("peak_rss_mb_by_part", {}).get(role, 0) for row in values), default=0)

    return {
        "memory_by_part_mb": {role: [peak(first, role), peak(last, role)] for role in roles},
        "throughput_first": first_rate,
        "throughput_last": last_rate,
        "throughput_ratio": last_rate / first_rate if first_rate and last_rate else None,
        "memory_first_mb": first_mem,
        "memory_last_mb": last_mem,
        "memory_growth": last_mem / first_mem - 1 if first_mem and last_mem else None,
        "tasks_accepted": accepted,
        "prefect_db_bytes": database,
        "prefect_db_bytes_per_task": database / accepted if accepted else None,
        "results_bytes": results,
    }


def render(
    rows: Sequence[dict[str, Any]],
    summary: dict[str, Any],
    failures: Sequence[str],
) -> str:
    lines = ["minute  ended  tasks/s  p99 (s)  peak memory (MB)"]
    lines += [
        f"{row['minute']:>6}  {row['ended']:>5}  {row['tasks_per_s']:>7}  "
        f"{row['p99_s']!s:>7}  {row['peak_rss_mb']:>16}"
        for row in rows
    ]
    s = summary
    lines.append(
        f"throughput: first {COMPARED} minutes {_fixed(s['throughput_first'])}, last "
        f"{COMPARED} {_fixed(s['throughput_last'])} tasks/s "
        f"(ratio {_fixed(s['throughput_ratio'])})"
    )
    lines.append(
        f"peak memory: {_fixed(s['memory_first_mb'])} → {_fixed(s['memory_last_mb'])} MB "
        f"(growth {_percent(s['memory_growth'])})"
    )
    lines.extend(
        f"  {role}: {first} → {last} MB" + (f" ({_percent(last / first - 1)})" if first else "")
        for role, (first, last) in s["memory_by_part_mb"].items()
    )
    lines.append(
        f"Prefect's database (with its WAL): {s['prefect_db_bytes']} bytes after "
        f"{s['tasks_accepted']} tasks ({_fixed(s['prefect_db_bytes_per_task'])} bytes a task, "
        f"{s['tasks_refused']} refused); results {s['results_bytes']} bytes"
    )
    lines.append(f"FAILED: {failures}" if failures else "every check held")
    return "\n".join(lines)


def _fixed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(main())
