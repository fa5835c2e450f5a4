"""Prefect's own auth string: the server asks every request for it, the service sends it,
and in production the service refuses to run beside a Prefect server that asks nothing."""

from __future__ import annotations

import base64
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from deployments.local import ROOT, Stack, environment
from tests import plain_http
from tests.conftest import NOT_MEASURED, WORKDIR, free_port
from tests.integration.conftest import Client, Engine, RunningStack, image_bytes, launcher

pytestmark = pytest.mark.integration

AUTH = "operator:a-long-random-password"


def test_with_an_auth_string_prefect_refuses_requests_without_it_and_the_service_works(
    tmp_path: Path, engine: Engine, s3_endpoint: str
) -> None:
    """`make run` with PREFECT_SERVER_API_AUTH_STRING and PREFECT_API_AUTH_STRING set starts
    (its Prefect server, worker and API), the server answers 401 to a request without the
    credentials and 200 with them, and a task posted to the API finishes."""
    prefect_api = f"http://127.0.0.1:{free_port()}/api"
    port = free_port()
    settings = {
        **NOT_MEASURED,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_SERVER_API_AUTH_STRING": AUTH,
        "PREFECT_API_AUTH_STRING": AUTH,
        "SERVICE_PORT": str(port),
        "SERVICE_URL": f"http://127.0.0.1:{port}",
        "INTAKE_PATH": str(tmp_path / "intake.db"),
        "RESULT_STORAGE": str(tmp_path / "results"),
        "LOCAL_S3_URL": "",
    }
    with launcher(**settings) as (process, _):
        listing = f"{prefect_api}/flow_runs/filter"
        assert plain_http.post(listing, json={}, timeout=10).status_code == 401
        basic = {"Authorization": f"Basic {base64.b64encode(AUTH.encode()).decode()}"}
        assert plain_http.post(listing, json={}, headers=basic, timeout=10).status_code == 200

        api = f"http://127.0.0.1:{port}"
        running = RunningStack(Stack({}), api, prefect_api, WORKDIR / "stack.log")
        client = Client(running, engine, s3_endpoint)
        task_id = client.submit([client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")])
        assert engine.final(task_id, timeout=120)["status"] == "finished"

        process.send_signal(signal.SIGINT)
        assert process.wait(90) == 0


@pytest.mark.parametrize("role", ["api", "flows"])
def test_in_production_the_service_refuses_a_prefect_that_asks_for_nothing(role: str) -> None:
    """The API and the worker, in production, with Prefect's API on another host and no
    PREFECT_API_AUTH_STRING, exit at start naming the settings, before any request."""
    env = environment(
        {
            **NOT_MEASURED,
            "ENVIRONMENT": "production",
            "PREFECT_API_URL": "http://prefect-server.invalid:4200/api",
            "SEALING_KEY": Fernet.generate_key().decode(),
            "ENGINE_URLS": '["http://engine.invalid"]',
            "PREFECT_API_AUTH_STRING": "",
        }
    )
    env.pop("PREFECT_API_AUTH_STRING")
    done = subprocess.run(
        [sys.executable, "-m", role], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "refusing to start" in done.stderr, done.stderr[-2000:]
    assert "PREFECT_API_AUTH_STRING" in done.stderr
    assert "PREFECT_SERVER_API_AUTH_STRING" in done.stderr
