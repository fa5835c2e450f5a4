"""The nemesis: faults struck at random moments, from a plan drawn from one seed.

The plan (when, what, which part, for how long) depends on the seed alone, so a failing run
can be replayed with its seed; when a strike's part is still in a fault of its own (a
worker still restarting), the strike waits for it. Faults of different parts overlap.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from chaos.stack import WORKERS, ChaosStack
from chaos.stream import TaskStream
from deployments.local import StartError

log = logging.getLogger("chaos")

KILL_WORKER = "SIGKILL a worker"
KILL_API = "SIGKILL the API"
KILL_PREFECT = "SIGKILL the Prefect server"
TERM_WORKER = "SIGTERM a worker"
S3_AWAY = "S3 away"
CALLBACK_REFUSED = "callbacks refused"
CALLBACK_503 = "callbacks answered 503"
FILL = "MAX_TASKS filled"
KINDS = (
    KILL_WORKER,
    KILL_API,
    KILL_PREFECT,
    TERM_WORKER,
    S3_AWAY,
    CALLBACK_REFUSED,
    CALLBACK_503,
    FILL,
)
# How long a fault of these kinds lasts, in seconds, drawn uniformly.
HOLDS = {S3_AWAY: (5.0, 60.0), CALLBACK_REFUSED: (5.0, 90.0), CALLBACK_503: (5.0, 90.0)}
RESTART_TRIES = 3
# Seconds a part stays healthy after its fault healed before its next fault.
HEALTHY_BETWEEN = 10.0


@dataclass(frozen=True)
class Strike:
    at: float  # seconds after the stream's start
    kind: str
    part: str  # what it strikes: a role of the stack, "s3", "engine" or "backlog"
    hold: float  # seconds the fault lasts, for the kinds in HOLDS


@dataclass
class Fault:
    strike: Strike
    struck: float | None = None  # time.monotonic()
    healed: float | None = None
    note: str = ""


def plan(seed: int, duration: float, gap: tuple[float, float]) -> list[Strike]:
    """The strikes of a run of `duration` s, one every `gap` s (uniform), from `seed`."""
    rng = random.Random(seed)
    strikes = []
    at = rng.uniform(*gap)
    while at < duration:
        kind = rng.choice(KINDS)
        part = {
            KILL_WORKER: rng.choice(WORKERS),
            TERM_WORKER: rng.choice(WORKERS),
            KILL_API: "api",
            KILL_PREFECT: "prefect server",
            S3_AWAY: "s3",
            CALLBACK_REFUSED: "engine",
            CALLBACK_503: "engine",
            FILL: "backlog",
        }[kind]
        hold = round(rng.uniform(*HOLDS[kind]), 1) if kind in HOLDS else 0.0
        strikes.append(Strike(round(at, 1), kind, part, hold))
        at += rng.uniform(*gap)
    return strikes


class Nemesis:
    def __init__(
        self, stack: ChaosStack, stream: TaskStream, max_tasks: int, say: Callable[[str], None]
    ) -> None:
        self._stack = stack
        self._stream = stream
        self._max_tasks = max_tasks
        self._say = say
        self._busy: dict[str, threading.Thread] = {}
        self.faults: list[Fault] = []

    def run(self, strikes: list[Strike], start: float, stop: threading.Event) -> None:
        """Strike each at its time (or once its part is free), then wait for all to heal."""
        for strike in strikes:
            if stop.wait(max(0.0, start + strike.at - time.monotonic())):
                break
            previous = self._busy.get(strike.part)
            if previous is not None:
                previous.join()
                # The part stays healthy a while after it healed: faults of one part
                # struck back to back would be one longer fault than its kind allows
                # (the engine away for 5 minutes, not 5 to 90 s).
                healed = self._healed(strike.part)
                if stop.wait(max(0.0, healed + HEALTHY_BETWEEN - time.monotonic())):
                    break
            fault = Fault(strike)
            self.faults.append(fault)
            thread = threading.Thread(target=self._strike, args=(fault, start), daemon=True)
            self._busy[strike.part] = thread
            thread.start()
        for thread in self._busy.values():
            thread.join()

    def _healed(self, part: str) -> float:
        """When the last fault of `part` healed (time.monotonic())."""
        return max((f.healed or 0.0) for f in self.faults if f.strike.part == part)

    def _strike(self, fault: Fault, start: float) -> None:
        strike, stack = fault.strike, self._stack
        fault.struck = time.monotonic()
        self._say(f"{fault.struck - start:6.1f} s  {strike.kind}: {strike.part} {_held(strike)}")
        if strike.kind in (KILL_WORKER, KILL_API, KILL_PREFECT):
            stack.kill(strike.part)
            self._restart(fault)
        elif strike.kind == TERM_WORKER:
            grace = float(stack.env["WORKER_SHUTDOWN_GRACE"])
            if not stack.terminate(strike.part, grace + 30):
                fault.note = f"still running {grace + 30:g} s after SIGTERM: killed"
            self._restart(fault)
        elif strike.kind == S3_AWAY:
            assert stack.s3_gate is not None
            stack.s3_gate.shut()
            time.sleep(strike.hold)
            stack.s3_gate.open()
        elif strike.kind == CALLBACK_REFUSED:
            assert stack.engine_gate is not None
            stack.engine_gate.shut()
            time.sleep(strike.hold)
            stack.engine_gate.open()
        elif strike.kind == CALLBACK_503:
            stack.engine.unavailable = True
            time.sleep(strike.hold)
            stack.engine.unavailable = False
        else:  # FILL: more tasks at once than the service takes
            self._stream.burst(self._max_tasks + 10)
        fault.healed = time.monotonic()
        self._say(f"{fault.healed - start:6.1f} s  healed: {strike.kind} ({strike.part})")

    def _restart(self, fault: Fault) -> None:
        for attempt in range(1, RESTART_TRIES + 1):
            try:
                self._stack.restart(fault.strike.part)
                return
            except StartError as error:
                fault.note += f" restart {attempt} failed: {error};"
                log.warning("restarting %s failed: %s", fault.strike.part, error)
        fault.note += " not restarted"


def _held(strike: Strike) -> str:
    return f"for {strike.hold:g} s" if strike.hold else ""
