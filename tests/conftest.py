"""Settings for the whole suite, fixed before anything imports Prefect.

Prefect reads its settings once, at import: the suite's own Prefect home, API port and
service settings go into the environment here, ahead of `.env`, so no test touches the
developer's database or ports.
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest
from cryptography.fernet import Fernet


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


WORKDIR = Path(tempfile.mkdtemp(prefix="service-tests-"))
PREFECT_PORT = free_port()
SERVICE_PORT = free_port()
S3_SECRET = f"s3-secret-{os.urandom(8).hex()}"
SEALING_KEY = Fernet.generate_key().decode()

os.environ.update(
    {
        "PREFECT_HOME": str(WORKDIR / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{PREFECT_PORT}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "SEALING_KEY": SEALING_KEY,
        "SERVICE_MODULE": "services.image_rotate",
        "SERVICE_HOST": "127.0.0.1",
        "SERVICE_PORT": str(SERVICE_PORT),
        "SERVICE_URL": f"http://127.0.0.1:{SERVICE_PORT}",
        "ENGINE_URLS": "[]",
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "debug",
        "WORK_POOL": "",
        "WORKER_POLL_INTERVAL": "0.1",
        "WORKER_LIMIT": "8",
        "WORKER_HEARTBEAT_SECONDS": "1",
        "WORKER_SHUTDOWN_GRACE": "5",
        "PROCESS_POOL_SIZE": "1",
        # No metrics port unless a test asks for one: many workers start on this machine.
        "WORKER_METRICS_PORT": "0",
        "MAX_TASKS": "50",
        "INTAKE_PATH": str(WORKDIR / "intake.db"),
        "RESULT_STORAGE": str(WORKDIR / "results"),
        # Long enough to see a retry happen, short enough for a quick suite.
        "TRANSIENT_RETRIES": "5",
        "RETRY_BASE_DELAY": "0.2",
        "S3_TIMEOUT": "10",
        "CALLBACK_TIMEOUT": "10",
    }
)


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    """pytest-httpserver on 127.0.0.1 for the whole suite (its default is "localhost"),
    whichever test starts it first."""
    return ("127.0.0.1", free_port())
