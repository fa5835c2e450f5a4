"""`make chaos`, short: tasks at a steady rate while parts of the service fail at random."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from deployments.local import ROOT, environment
from tests.conftest import NOT_MEASURED

pytestmark = pytest.mark.integration

DURATION = 60
# The stream, then the last retries of callbacks held back by a fault near its end (the
# engine answering 503 for up to 90 s, its retries at most 30 s apart), on a loaded machine.
DEADLINE = 900


@pytest.mark.timeout(DEADLINE + 120)
def test_a_short_chaos_run_keeps_every_task(tmp_path: Path) -> None:
    """A minute of tasks while a nemesis strikes at random (its seed in the failure, to
    replay it): every accepted task ends with one terminal callback, finished with its
    outputs in S3 or error with a reason; no refused task runs; no file holds the secret."""
    seed = random.SystemRandom().randrange(10**6)
    args = [sys.executable, "-m", "chaos", "--duration", str(DURATION), "--seed", str(seed)]
    args += ["--rate", "1", "--gap", "4", "15", "--out", str(tmp_path)]
    # Its stack runs unmeasured, like the benchmarks' stacks: the same code as the suite's.
    chaos = subprocess.Popen(
        args,
        cwd=ROOT,
        env=environment(NOT_MEASURED),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = chaos.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        # SIGTERM: it stops its stack, the API first, and so leaves nothing behind.
        chaos.send_signal(signal.SIGTERM)
        out, _ = chaos.communicate(timeout=120)
        pytest.fail(f"seed {seed}: still running after {DEADLINE} s:\n{out}")
    said = f"seed {seed}:\n{out}"
    assert chaos.returncode == 0, said
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["failures"] == [], said
    assert report["accepted"] >= DURATION // 2, said
    assert len(report["faults"]) >= 3, said
    assert all(fault["healed"] for fault in report["faults"]), said
    # One each; two, alike, only where the engine's answer to the first was cut on its
    # way back (chaos.verdict.LOST_ANSWER), which the verdict reports apart.
    twice = report["terminal_callbacks_per_task"].get("2", 0)
    assert set(report["terminal_callbacks_per_task"]) <= {"1", "2"}, said
    assert twice == len(report["answers_lost"]), said
