"""`make run`: the whole service on one machine.

Starts a Prefect server on SQLite (unless one already answers at PREFECT_API_URL), a
worker and the API, each as its own process, prints where to look, and stops them all
on Ctrl-C or SIGTERM, or when any of them dies. The test suite, the benchmarks and the
distributed mode (`deployments.scaled`) start their processes with the same functions.

Each process runs in a process group of its own, so the SIGINT of a Ctrl-C reaches only
the supervisor, which then stops them one at a time, the last started first: the API
and the worker while the Prefect server still answers them, the server while its
database still does.
"""

from __future__ import annotations

import base64
import contextlib
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from dotenv import dotenv_values

from core.settings import DEFAULT_RUN_RETENTION, checked_run_retention
from services.base import load_service

ROOT = Path(__file__).resolve().parent.parent


class StartError(Exception):
    """A process did not come up in time, or exited while starting."""


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll `check` until it is true; StartError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise StartError(f"{what} not ready after {timeout:.0f} s")
        time.sleep(interval)


def free_port() -> int:
    """A port nothing listens on at 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def prefect_headers(env: Mapping[str, str]) -> dict[str, str]:
    """What a request to the Prefect API carries: its credentials, when the server asks
    for them (PREFECT_API_AUTH_STRING, HTTP basic, as Prefect's own client sends them)."""
    auth = env.get("PREFECT_API_AUTH_STRING", "")
    return {"Authorization": f"Basic {base64.b64encode(auth.encode()).decode()}"} if auth else {}


def answers(url: str, timeout: float = 2.0, headers: Mapping[str, str] | None = None) -> bool:
    """True when `url` answers 2xx."""
    try:
        request = urllib.request.Request(url, headers=dict(headers or {}))
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= int(response.status) < 300
    except (urllib.error.URLError, OSError):
        return False


def responds(url: str, timeout: float = 2.0) -> bool:
    """True when anything answers HTTP at `url`, whatever the status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    # What asks it to stop: PostgreSQL takes SIGINT as its fast shutdown.
    stop_signal: signal.Signals = signal.SIGTERM

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 60.0) -> str | None:
        """Its stop signal, then SIGKILL to its process group if it has not exited after
        `timeout` seconds; what happened, in a line, or None if it was not running."""
        if not self.alive():
            return None
        self.popen.send_signal(self.stop_signal)
        try:
            self.popen.wait(timeout)
            return f"stopped {self.name}"
        except subprocess.TimeoutExpired:
            # The worker dumps every thread's stack on SIGUSR1: the log then says where
            # it hung before it is killed.
            self.popen.send_signal(signal.SIGUSR1)
            time.sleep(1)
            # The group, not only the process: its own children (the worker's process
            # pool) would outlive it. It leads the group (`Stack.start`) and is not
            # reaped yet, so the group is still its own.
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
            signalled = self.stop_signal.name
            return f"killed {self.name}: still running {timeout:g} s after {signalled}"


class Halt:
    """Whether a stop was asked for. Set from a signal handler, hence a plain flag: a lock
    taken there could be one the interrupted code already holds."""

    def __init__(self) -> None:
        self.asked = False


@dataclass
class Stack:
    """The processes of one running service, stopped in reverse order of start."""

    env: dict[str, str]
    log: IO[bytes] | None = None
    processes: list[Process] = field(default_factory=list)
    # Once asked (by `supervise`'s signal handler), a process still starting is waited
    # for no longer.
    halt: Halt = field(default_factory=Halt)

    def variant(self, **overrides: str) -> Stack:
        """This stack with some settings changed for the processes started through it
        (a second API on another port, say); they are stopped with this stack."""
        return Stack({**self.env, **overrides}, self.log, self.processes, self.halt)

    def start(
        self,
        name: str,
        args: list[str],
        ready: Callable[[], bool],
        timeout: float,
        *,
        user: str | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> Process:
        """Start `args` (as `user` and only that user's group, when given) in a process
        group of its own, and wait until `ready()` is true."""
        popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            # None of them reads a terminal; one in a background process group that tried
            # would be stopped (SIGTTIN).
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            user=user,
            group=None if user is None else pwd.getpwnam(user).pw_gid,
            extra_groups=None if user is None else [],
            # Out of the terminal's foreground group: a Ctrl-C would signal every process
            # at once, and PostgreSQL would go before the Prefect server that uses it.
            process_group=0,
        )
        process = Process(name, popen, stop_signal)
        self.processes.append(process)

        def up() -> bool:
            if self.halt.asked:
                raise StartError(f"stop asked for while {name} was starting")
            if not process.alive():
                raise StartError(f"{name} exited with {popen.returncode} while starting")
            return ready()

        wait_until(up, timeout, name)
        return process

    def stop(self, say: Callable[[str], None] | None = None) -> None:
        """Stop every process, the last started first, telling `say` of each that was
        still running."""
        for process in reversed(self.processes):
            line = process.stop()
            if line is not None and say is not None:
                say(line)
        self.processes.clear()


def environment(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The children's environment: `.env`, then the caller's environment, then overrides."""
    env = {k: v for k, v in dotenv_values(ROOT / ".env").items() if v is not None}
    env.update(os.environ)
    env.update(overrides or {})
    home = Path(env.get("PREFECT_HOME", ".data/prefect"))
    home = home if home.is_absolute() else ROOT / home
    home.mkdir(parents=True, exist_ok=True)
    env["PREFECT_HOME"] = str(home)
    return env


def retention_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The Prefect server's database vacuum, on and driven by RUN_RETENTION: flow runs that
    ended longer ago go (with their task runs, logs and artifacts), and older events. Any
    of these variables the caller set wins. Durations as ISO 8601: the events' retention
    refuses a bare number of seconds."""
    raw = env.get("RUN_RETENTION", str(DEFAULT_RUN_RETENTION)).strip()
    if not raw.isdigit():
        raise StartError(f"RUN_RETENTION must be a number of seconds, not {raw!r}")
    try:
        seconds = checked_run_retention(int(raw))
    except ValueError as error:
        raise StartError(str(error)) from None
    derived = {
        "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
        "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": f"PT{seconds}S",
        "PREFECT_SERVER_EVENTS_RETENTION_PERIOD": f"PT{seconds}S",
    }
    return {name: env.get(name, value) for name, value in derived.items()}


def start_prefect_server(stack: Stack, timeout: float = 90.0) -> Process | None:
    """A Prefect server at PREFECT_API_URL's host and port, on SQLite unless
    PREFECT_API_DATABASE_CONNECTION_URL names another database, vacuuming what is older
    than RUN_RETENTION; None if one answers."""
    api_url = stack.env["PREFECT_API_URL"].rstrip("/")
    health = f"{api_url}/health"
    if answers(health):
        return None
    parts = urlsplit(api_url)
    # Prefect's own server, its SQLite write transactions begun IMMEDIATE (see the module).
    args = [sys.executable, "-m", "deployments.prefect_server"]
    args += ["--host", parts.hostname or "127.0.0.1", "--port", str(parts.port or 4200)]
    server = stack.variant(**retention_settings(stack.env))
    return server.start("prefect server", args, lambda: answers(health), timeout)


def s3_line(url: str | None) -> str:
    """The line of the printed URLs that says where the local S3 is, if one runs."""
    return f"  Local S3   {url} (development only, any credentials)\n" if url else ""


def start_local_s3(stack: Stack, timeout: float = 60.0) -> str | None:
    """moto's S3 server at LOCAL_S3_URL, in development only, for trying the service with
    `python -m client`; its URL, or None when off. An S3 already answering there is used."""
    url = stack.env.get("LOCAL_S3_URL", "")
    if not url or stack.env.get("ENVIRONMENT", "development") != "development":
        return None
    if responds(url):
        return url
    parts = urlsplit(url)
    args = [sys.executable, "-m", "moto.server"]
    args += ["-H", parts.hostname or "127.0.0.1", "-p", str(parts.port or 9000)]
    stack.start("local s3", args, lambda: responds(url), timeout)
    return url


def deployment_registered(env: Mapping[str, str], slug: str) -> Callable[[], bool]:
    url = f"{env['PREFECT_API_URL'].rstrip('/')}/deployments/name/compute/{slug}"
    headers = prefect_headers(env)
    return lambda: answers(url, headers=headers)


def start_worker(stack: Stack, slug: str, timeout: float = 60.0) -> Process:
    """A worker; ready once the deployment it registers exists."""
    args = [sys.executable, "-m", "flows"]
    return stack.start("worker", args, deployment_registered(stack.env, slug), timeout)


def api_url(env: Mapping[str, str]) -> str:
    return f"http://{env.get('SERVICE_HOST', '127.0.0.1')}:{env.get('SERVICE_PORT', '9090')}"


def start_api(stack: Stack, timeout: float = 60.0) -> Process:
    # Up once it answers at all: /status says 503 while Prefect is unreachable, and the
    # API still takes tasks then.
    status = f"{api_url(stack.env)}/status"
    return stack.start("api", [sys.executable, "-m", "api"], lambda: responds(status), timeout)


def supervise(stack: Stack, start: Callable[[], str]) -> int:
    """Run `start` (which starts the processes and says where to look), print what it
    said, then wait for Ctrl-C, SIGTERM or SIGHUP, or for a process to die; stop them all,
    the last started first, printing a line for each."""

    def request_stop(signum: int, frame: object) -> None:
        stack.halt.asked = True

    # SIGHUP too: when the terminal closes, the shell hangs up its job's process group,
    # which the processes are no longer in.
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, request_stop)
    try:
        say(f"\n{start()}  Ctrl-C stops everything.\n")
        while not stack.halt.asked:
            dead = [p for p in stack.processes if not p.alive()]
            if dead:
                say(f"{dead[0].name} exited with {dead[0].popen.returncode}; stopping")
                return 1
            time.sleep(0.5)
        return 0
    except StartError as error:
        if stack.halt.asked:  # a Ctrl-C while starting: what was asked, not a failure
            return 0
        print(f"could not start: {error}", file=sys.stderr)
        return 1
    finally:
        stack.stop(say)


def say(line: str) -> None:
    """Print `line` at once, in order with the processes' output on the same stdout."""
    # The terminal may be gone (SIGHUP): the processes are to be stopped all the same.
    with contextlib.suppress(OSError):
        print(line, flush=True)


def prefect_ui(env: Mapping[str, str]) -> str:
    return env["PREFECT_API_URL"].rstrip("/").removesuffix("/api")


def main() -> int:
    env = environment()
    slug = load_service(env.get("SERVICE_MODULE", "services.image_rotate")).description.slug
    stack = Stack(env)

    def start() -> str:
        start_prefect_server(stack)
        s3 = start_local_s3(stack)
        start_worker(stack, slug)
        start_api(stack)
        return f"  API docs   {api_url(env)}/docs\n  Prefect UI {prefect_ui(env)}\n{s3_line(s3)}"

    return supervise(stack, start)


if __name__ == "__main__":
    sys.exit(main())
