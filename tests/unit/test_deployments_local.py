"""How `Stack` starts its processes and stops them (`make run`'s supervisor, the suite's
stack), with `sleep` standing in for the service's processes."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.local import Stack, StartError, environment, wait_until

SLEEP = ["sleep", "600"]


@pytest.fixture
def stack() -> Iterator[Stack]:
    running = Stack(environment())
    try:
        yield running
    finally:
        running.stop()


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has ended: only its exit status is left to collect)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_each_process_leads_a_process_group_of_its_own(stack: Stack) -> None:
    """A process is outside its starter's process group, so a terminal's Ctrl-C (sent to
    the foreground group) reaches only the starter."""
    process = stack.start("sleeper", SLEEP, lambda: True, 10)
    assert os.getpgid(process.popen.pid) == process.popen.pid != os.getpgrp()


def test_stop_goes_last_started_first_and_says_each_one_it_stopped(stack: Stack) -> None:
    """Each running process is stopped in reverse order of start, with one line for each;
    one that had exited already is skipped."""
    first = stack.start("first", SLEEP, lambda: True, 10)
    gone = stack.start("gone", SLEEP, lambda: True, 10)
    stack.variant(SOME_SETTING="on").start("last", SLEEP, lambda: True, 10)
    gone.popen.kill()
    gone.popen.wait(10)
    said: list[str] = []
    stack.stop(said.append)
    assert said == ["stopped last", "stopped first"]
    assert not alive(first.popen.pid)
    assert stack.processes == []


def test_a_stop_asked_for_while_a_process_starts_ends_the_wait_for_it(stack: Stack) -> None:
    """Once the stack's halt is asked (by the supervisor's signal handler), the wait for a
    process to be ready ends at once, and the process is stopped with the stack."""
    stack.variant(SOME_SETTING="on").halt.asked = True  # variants share the halt
    started = time.monotonic()
    with pytest.raises(StartError, match="stop asked for while sleeper was starting"):
        stack.start("sleeper", SLEEP, lambda: False, 600)
    assert time.monotonic() - started < 60
    [process] = stack.processes
    said: list[str] = []
    stack.stop(said.append)
    assert said == ["stopped sleeper"]
    assert not alive(process.popen.pid)


def test_a_process_deaf_to_its_stop_signal_is_killed_with_its_own_children(
    stack: Stack, tmp_path: Path
) -> None:
    """One still running `timeout` seconds after its stop signal is killed, and so are the
    processes it started (as the worker starts its process pool), all in its group."""
    deaf = (
        "import signal, subprocess, time\n"
        "for each in (signal.SIGTERM, signal.SIGUSR1):\n"
        "    signal.signal(each, signal.SIG_IGN)\n"
        "child = subprocess.Popen(['sleep', '600'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    output = tmp_path / "deaf.log"
    with output.open("wb") as log:
        process = Stack(stack.env, log, stack.processes).start(
            "deaf", [sys.executable, "-c", deaf], lambda: output.read_text().endswith("\n"), 60
        )
    child = int(output.read_text())
    assert process.stop(timeout=0.5) == "killed deaf: still running 0.5 s after SIGTERM"
    assert not alive(process.popen.pid)
    wait_until(lambda: not alive(child), 30, "the deaf process's child to be killed")
