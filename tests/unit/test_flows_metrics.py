"""flows.metrics: the worker's metrics port."""

from __future__ import annotations

import logging
import socket

import pytest

from flows.metrics import serve
from tests import plain_http
from tests.conftest import free_port


def test_serves_the_metrics_on_the_port() -> None:
    """The worker's metrics answer at /metrics on the port asked for."""
    port = free_port()
    assert serve("127.0.0.1", port)
    text = plain_http.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert "core_service_tasks_running" in text
    assert "core_service_stage_seconds" in text


def test_port_zero_serves_nothing() -> None:
    """WORKER_METRICS_PORT=0 turns the metrics port off."""
    assert not serve("127.0.0.1", 0)


def test_a_taken_port_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    """A port in use leaves the worker running without metrics, saying why."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="flows.metrics"):
            assert not serve("127.0.0.1", port)
    assert f"cannot serve metrics on 127.0.0.1:{port}" in caplog.text
