"""The service as `make run` starts it, with two workers, every part of which can be killed
and started again in place: the same ports, the same Prefect database, the same journal.

S3 (moto's server) and the engine each sit behind a `Gate`, so that either can be taken
away from the service and given back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import boto3
from cryptography.fernet import Fernet
from dotenv import dotenv_values

from chaos.engine import Engine
from chaos.gate import Gate
from deployments.local import (
    ROOT,
    Process,
    Stack,
    api_url,
    environment,
    free_port,
    responds,
    start_api,
    start_prefect_server,
    start_worker,
)
from services import image_rotate

BUCKET = "engine"
ACCESS_KEY = "chaos-access-key"
SLUG = image_rotate.DESCRIPTION.slug
WORKERS = ("worker-1", "worker-2")
START_TIMEOUT = 180.0
# Taken from `.env` whatever the caller's environment says (a test suite shortens them):
# the faults' lengths are drawn against the retries a deployment has.
PRODUCTION_TIMERS = (
    "TRANSIENT_RETRIES",
    "CALLBACK_RETRIES",
    "RETRY_BASE_DELAY",
    "REDELIVERY_DELAY",
    "REDELIVERY_MAX_DELAY",
    "S3_TIMEOUT",
    "CALLBACK_TIMEOUT",
    "WORKER_POLL_INTERVAL",
    "WORKER_LIMIT",
    "PROCESS_POOL_SIZE",
)


def service_environment(
    tmp: Path, *, max_tasks: int, heartbeat: int, grace: float, extra: dict[str, str]
) -> dict[str, str]:
    """`.env`'s settings but for ports, paths, a fresh sealing key and the timers given."""
    port = free_port()
    defaults = dotenv_values(ROOT / ".env")
    return environment(
        {
            **{name: defaults[name] or "" for name in PRODUCTION_TIMERS},
            "PREFECT_HOME": str(tmp / "prefect"),
            "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "SEALING_KEY": Fernet.generate_key().decode(),
            "INTAKE_PATH": str(tmp / "intake.db"),
            "RESULT_STORAGE": str(tmp / "results"),
            "SERVICE_MODULE": image_rotate.__name__,
            "SERVICE_HOST": "127.0.0.1",
            "SERVICE_PORT": str(port),
            "SERVICE_URL": f"http://127.0.0.1:{port}",
            "WORKER_METRICS_PORT": "0",
            "WORKER_HEARTBEAT_SECONDS": str(heartbeat),
            "WORKER_SHUTDOWN_GRACE": str(grace),
            "MAX_TASKS": str(max_tasks),
            "ENGINE_URLS": "[]",
            "LOG_LEVEL": "info",
            "LOG_FORMAT": "text",
            "ENVIRONMENT": "test",
            **extra,
        }
    )


@dataclass
class ChaosStack:
    """The running parts, each by role: "prefect server", "worker-1", "worker-2", "api"."""

    env: dict[str, str]
    log: IO[bytes]
    secret: str
    engine: Engine = field(default_factory=Engine)
    parts: dict[str, Process] = field(default_factory=dict)
    s3: Process | None = None
    s3_port: int = 0
    _quiet: IO[bytes] | None = None
    s3_gate: Gate | None = None
    engine_gate: Gate | None = None

    @property
    def api(self) -> str:
        return api_url(self.env)

    @property
    def prefect_api(self) -> str:
        return self.env["PREFECT_API_URL"].rstrip("/")

    @property
    def intake_path(self) -> Path:
        return Path(self.env["INTAKE_PATH"])

    def s3_client(self) -> Any:
        """A client of S3 itself, not through the gate: the engine's own view of it."""
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self.s3_port}",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=self.secret,
            region_name="us-east-1",
        )

    def start(self) -> None:
        self.s3_port = free_port()
        url = f"http://127.0.0.1:{self.s3_port}"
        args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)]
        # moto logs a line per request: 20 a second here, nothing the report needs.
        self._quiet = open(os.devnull, "wb")  # noqa: SIM115  # closed by `stop`
        s3 = Stack(self.env, log=self._quiet)
        self.s3 = s3.start("s3", args, lambda: responds(url), 60)
        self.s3_client().create_bucket(Bucket=BUCKET)
        self.s3_gate = Gate(self.s3_port)
        self.engine_gate = Gate(self.engine.port)
        for role in ("prefect server", *WORKERS, "api"):
            self.restart(role)

    def restart(self, role: str) -> None:
        """Start `role` (again, in place), and wait until it is up."""
        stack = Stack(self.env, log=self.log)
        if role == "prefect server":
            process = start_prefect_server(stack, START_TIMEOUT)
            assert process is not None, "a Prefect server already answers at its port"
        elif role in WORKERS:
            # The name survives a restart, as a container's hostname does.
            process = start_worker(stack.variant(WORKER_NAME=role), SLUG, START_TIMEOUT)
        else:
            process = start_api(stack, START_TIMEOUT)
        self.parts[role] = process

    def kill(self, role: str) -> None:
        """SIGKILL to the role's whole process group (a worker's process pool with it)."""
        process = self.parts[role]
        if process.alive():
            os.killpg(process.popen.pid, signal.SIGKILL)
        process.popen.wait()

    def terminate(self, role: str, timeout: float) -> bool:
        """SIGTERM, as a rolling restart sends; False if it had to be killed after `timeout`."""
        process = self.parts[role]
        process.popen.send_signal(signal.SIGTERM)
        try:
            process.popen.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            self.kill(role)
            return False

    def roots(self) -> dict[str, int]:
        """Each running part's process id, for its memory."""
        return {role: p.popen.pid for role, p in self.parts.items() if p.alive()}

    def stop(self) -> None:
        for role in ("api", *WORKERS, "prefect server"):
            if role in self.parts:
                self.parts[role].stop()
        if self.s3 is not None:
            self.s3.stop()
        if self._quiet is not None:
            self._quiet.close()
        for gate in (self.s3_gate, self.engine_gate):
            if gate is not None:
                gate.shut()
        self.engine.close()
