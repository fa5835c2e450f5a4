"""A task from POST /compute to its callback, against the real stack."""

from __future__ import annotations

import io
import os
import signal

import pytest
from PIL import Image

from tests import plain_http
from tests.integration.conftest import Client, image_bytes, wait_for
from tests.integration.proxy import Proxy

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(("image_format", "extension"), [("PNG", ".png"), ("JPEG", ".jpg")])
def test_rotates_the_image_and_calls_back(
    client: Client, image_format: str, extension: str
) -> None:
    """The output in S3 is the input turned 90° clockwise, in the input's format."""
    source = image_bytes(image_format, size=(64, 32))
    task_id = client.submit([client.put(source, extension), client.put(b" 90\n", ".txt")])

    update = client.engine.final(task_id)

    assert update["status"] == "finished", update
    assert update["error_message"] is None
    [key] = update["data_out"]
    assert key.endswith(extension)
    with Image.open(io.BytesIO(client.get(key))) as rotated:
        assert rotated.format == image_format
        assert rotated.size == (32, 64)
        rgb = rotated.convert("RGB")
        # Clockwise: the top-left quadrant (red) goes to the top-right, the bottom-left
        # (blue) to the top-left, the top-right (green) to the bottom-right.
        assert _near(rgb.getpixel((24, 8)), (255, 0, 0))
        assert _near(rgb.getpixel((8, 8)), (0, 0, 255))
        assert _near(rgb.getpixel((24, 56)), (0, 255, 0))
        assert _near(rgb.getpixel((8, 56)), (255, 255, 0))


def _near(pixel: object, expected: tuple[int, int, int]) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(a - b) <= 40 for a, b in zip(pixel, expected, strict=True))


def test_status_ends_finished_and_keeps_answering(client: Client) -> None:
    """A finished task answers `finished`, again and again, never 404."""
    task_id = client.submit([client.put(image_bytes("PNG"), ".png"), client.put(b"180", ".txt")])
    client.engine.final(task_id)

    def finished() -> bool:
        answer: dict[str, str] = client.status(task_id).json()
        return answer == {"status": "finished"}

    wait_for(finished, 30, "status finished")
    for _ in range(3):
        assert client.status(task_id).json() == {"status": "finished"}


def test_status_is_pending_until_a_worker_starts_the_run(client: Client) -> None:
    """With the worker paused, an accepted task says `pending`, never `scheduled`."""
    worker = client.stack.process("worker")
    os.kill(worker.popen.pid, signal.SIGSTOP)
    try:
        task_id = client.submit([client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")])
        response = client.status(task_id)
        assert response.status_code == 200
        assert response.json() == {"status": "pending"}
    finally:
        os.kill(worker.popen.pid, signal.SIGCONT)
    assert client.engine.final(task_id)["status"] == "finished"


def test_status_says_fetching_while_inputs_are_read(client: Client) -> None:
    """While S3 has not answered the reads, the task is `fetching`."""
    proxy = Proxy(_port(client.s3_endpoint), hold=lambda first: first.startswith(b"GET"))
    try:
        keys = [client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")]
        task_id = client.submit(keys, s3_host=proxy.url)
        wait_for(proxy.held.is_set, 90, "the worker to read from S3")
        wait_for(lambda: client.status(task_id).json() == {"status": "fetching"}, 30, "fetching")
        proxy.release()
        assert client.engine.final(task_id)["status"] == "finished"
    finally:
        proxy.close()


def test_status_says_saving_while_outputs_are_written(client: Client) -> None:
    """While S3 has not answered the upload, the task is `saving`."""
    proxy = Proxy(_port(client.s3_endpoint), hold=lambda first: first.startswith(b"PUT"))
    try:
        keys = [client.put(image_bytes("PNG"), ".png"), client.put(b"270", ".txt")]
        task_id = client.submit(keys, s3_host=proxy.url)
        wait_for(proxy.held.is_set, 90, "the worker to write to S3")
        wait_for(lambda: client.status(task_id).json() == {"status": "saving"}, 30, "saving")
        proxy.release()
        assert client.engine.final(task_id)["status"] == "finished"
    finally:
        proxy.close()


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


def test_same_task_twice_is_one_flow_run(client: Client) -> None:
    """Posting the same task id twice creates one flow run and one callback."""
    body = client.body([client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")])
    task_id = body["task"]["id"]
    client.engine.accept(task_id)
    first = plain_http.post(f"{client.stack.api}/compute", json=body, timeout=10)
    second = plain_http.post(f"{client.stack.api}/compute", json=body, timeout=10)
    assert first.status_code == second.status_code == 200
    client.engine.final(task_id)

    runs = plain_http.post(
        f"{client.stack.prefect_api}/flow_runs/filter",
        json={"flow_runs": {"name": {"any_": [task_id]}}},
        timeout=10,
    ).json()
    assert len(runs) == 1
    wait_for(lambda: client.status(task_id).json()["status"] == "finished", 30, "finished")
    assert [u["status"] for u in client.engine.updates[task_id]] == ["finished"]
