"""`make chaos`: engine-like tasks at a steady rate for DURATION s while a nemesis strikes
at random moments, then every task checked once the faults have healed.

    .venv/bin/python -m chaos [--duration 600] [--seed N] [--rate 2] [--out .data/chaos]

Starts its own stack on 127.0.0.1 (chaos.stack): a Prefect server on SQLite, two workers,
the API, moto's S3 and a stand-in engine, the last two behind gates. The nemesis
(chaos.nemesis) strikes every 5-25 s: SIGKILL a worker, the API or the Prefect server
(each started again at once, in place), SIGTERM a worker (a rolling restart), S3 away for
5-60 s, the engine refusing its callbacks or answering 503 for 5-90 s, or a burst beyond
MAX_TASKS. Then, with every fault healed, it waits until every accepted task has had its
terminal callback and Prefect has no run left, and checks (chaos.verdict):

- every task answered 200 ended with a terminal callback: `finished` with outputs that
  exist in S3, or `error` with a reason;
- no task had two terminal callbacks, agreeing or not, but where the engine's answer to
  the first was lost on its way back (reported apart: chaos.verdict.LOST_ANSWER);
- no task whose submission failed (refused, or no answer within 5 s) ran, or has a flow run;
- no file the stack wrote holds the S3 secret.

It prints the seed first (the same seed replays the same strikes) and a report at the
end, also written to `<out>/report.txt` (its figures to `report.json`), with the
service's output in `<out>/service.log`.
Exit status 1 when a check failed, 2 when the stack could not start.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.run import unended_runs, wait
from chaos.nemesis import Nemesis, plan
from chaos.stack import ChaosStack, service_environment
from chaos.stream import ENGINE_TIMEOUT, TaskStream
from chaos.verdict import deliveries, drained, holding, journal_count, judge, report
from deployments.local import ROOT, StartError


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of stream")
    parser.add_argument("--seed", type=int, default=None, help="the strikes' seed (random)")
    parser.add_argument("--rate", type=float, default=2.0, help="tasks a second (default 2)")
    parser.add_argument("--gap", type=float, nargs=2, default=(5.0, 25.0), metavar=("MIN", "MAX"))
    parser.add_argument("--max-tasks", type=int, default=50, help="the service's MAX_TASKS")
    parser.add_argument("--heartbeat", type=int, default=10, help="WORKER_HEARTBEAT_SECONDS")
    parser.add_argument("--grace", type=float, default=10.0, help="WORKER_SHUTDOWN_GRACE")
    parser.add_argument(
        "--drain", type=float, default=900.0, help="seconds to wait for the last callbacks"
    )
    parser.add_argument("--out", type=Path, default=ROOT / ".data" / "chaos")
    return parser.parse_args(argv)


def say(line: str) -> None:
    print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    say(f"seed {seed} (the same strikes again: make chaos SEED={seed})")
    strikes = plan(seed, args.duration, tuple(args.gap))
    args.out.mkdir(parents=True, exist_ok=True)
    secret = f"chaos-secret-{os.urandom(8).hex()}"
    with contextlib.ExitStack() as cleanup:
        tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="chaos-")))
        log_path = args.out / "service.log"
        log = cleanup.enter_context(log_path.open("wb"))
        env = service_environment(
            tmp, max_tasks=args.max_tasks, heartbeat=args.heartbeat, grace=args.grace, extra={}
        )
        stack = ChaosStack(env, log, secret)
        stopped = False

        def stop_stack() -> None:
            nonlocal stopped
            if not stopped:
                stopped = True
                stack.stop()

        cleanup.callback(stop_stack)
        say("starting the stack ...")
        try:
            stack.start()
        except StartError as error:
            say(f"could not start: {error}; see {log_path}")
            return 2
        stream = TaskStream(stack)
        nemesis = Nemesis(stack, stream, args.max_tasks, say)
        halt = threading.Event()
        start = time.monotonic()
        say(f"{len(strikes)} strike(s) planned over {args.duration:g} s, {args.rate:g} task(s)/s")
        # A daemon, and told to stop on the way out: a SIGTERM must not wait for the plan.
        striking = threading.Thread(target=nemesis.run, args=(strikes, start, halt), daemon=True)
        cleanup.callback(halt.set)
        striking.start()
        stream.steady(args.rate, start + args.duration, halt)
        striking.join()
        wait(stream.settled, ENGINE_TIMEOUT * 3, interval=0.2)
        say("faults healed; waiting for every task to end ...")
        drain_start = time.monotonic()
        check = drained(stream.submissions, stack.engine, stack.prefect_api, stack.intake_path)
        complete = wait(check, args.drain, interval=1.0)
        drain_s = time.monotonic() - drain_start
        cuts = stack.engine_gate.cuts if stack.engine_gate is not None else []
        verdict = judge(
            stream.submissions,
            stack.engine,
            stack.s3_client(),
            stack.prefect_api,
            cuts,
            start,
            deliveries(log_path),
        )
        if not complete:
            verdict.fail(
                f"not drained after {args.drain:g} s: journal "
                f"{journal_count(stack.intake_path)}, unended runs "
                f"{unended_runs(stack.prefect_api)}"
            )
        for fault in nemesis.faults:
            if "not restarted" in fault.note:
                verdict.fail(f"{fault.strike.part} could not be started again: {fault.note}")
        stream.close()
        stop_stack()
        log.flush()
        for path in holding(secret.encode(), [tmp, log_path]):
            verdict.fail(f"the S3 secret is in {path.name}")
        text = report(
            seed, args.duration, stream.submissions, nemesis.faults, stack.engine, verdict, drain_s
        )
        (args.out / "report.txt").write_text(text + "\n")
        summary = {
            "seed": seed,
            "sent": len(stream.submissions),
            "accepted": sum(1 for s in stream.submissions if s.accepted),
            "faults": [
                {"kind": f.strike.kind, "part": f.strike.part, "healed": f.healed is not None}
                for f in nemesis.faults
            ],
            "terminal_callbacks_per_task": dict(verdict.terminal_per_task),
            "answers_lost": verdict.answers_lost,
            "failures": verdict.failures,
        }
        (args.out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
        say("\n" + text)
        return 1 if verdict.failures else 0


if __name__ == "__main__":
    # SIGTERM unwinds like Ctrl-C, so every process started is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    sys.exit(main())
