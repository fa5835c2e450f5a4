"""A worker that dies or stops mid-run loses nothing: its runs end with a callback."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from deployments.local import Process, Stack, environment, start_worker
from tests.conftest import WORKDIR
from tests.integration.conftest import SLUG, Client, image_bytes, wait_for
from tests.integration.proxy import Proxy

pytestmark = pytest.mark.integration


@contextmanager
def only_an_extra_worker(client: Client) -> Iterator[Process]:
    """A second worker that alone takes new runs: the suite's worker is paused until exit.

    The suite's worker is never killed, so what it measured for coverage is kept.
    """
    main = client.stack.process("worker")
    with (WORKDIR / "stack.log").open("ab") as log:
        extra = Stack(environment({"WORKER_NAME": f"extra-{uuid.uuid4()}"}), log=log)
        try:
            os.kill(main.popen.pid, signal.SIGSTOP)
            yield start_worker(extra, SLUG)
        finally:
            os.kill(main.popen.pid, signal.SIGCONT)
            extra.stop()


@pytest.mark.parametrize("kill", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_run_of_a_stopped_worker_is_run_again_by_another(
    client: Client, kill: signal.Signals
) -> None:
    """A worker killed (or stopped past its grace period) while a run fetches: another
    worker runs the task again and the engine gets `finished`, once."""
    proxy = Proxy(int(client.s3_endpoint.rsplit(":", 1)[1]), hold=lambda b: b.startswith(b"GET"))
    try:
        with only_an_extra_worker(client) as extra:
            keys = [client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")]
            task_id = client.submit(keys, s3_host=proxy.url)
            wait_for(proxy.held.is_set, 30, "the extra worker to read from S3")
            extra.popen.send_signal(kill)
            extra.popen.wait(60)
        proxy.release()

        update = client.engine.final(task_id, timeout=90)
        assert update["status"] == "finished", update
        assert [u["status"] for u in client.engine.delivered[task_id]] == ["finished"]
        assert client.flow_run(task_id)["run_count"] >= 2
    finally:
        proxy.close()
