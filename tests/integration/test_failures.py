"""Tasks that cannot be done end with an `error` callback that says why; faults that pass
are retried."""

from __future__ import annotations

import uuid

import pytest

from tests import plain_http
from tests.integration.conftest import Client, image_bytes, wait_for
from tests.integration.proxy import Proxy

pytestmark = pytest.mark.integration


def test_missing_input_key_is_reported(client: Client) -> None:
    """A key that is not in the bucket ends with an error naming the input and the key."""
    missing = f"{uuid.uuid4()}.png"
    task_id = client.submit([missing, client.put(b"90", ".txt")])

    update = client.engine.final(task_id)

    assert update["status"] == "error"
    assert update["data_out"] == []
    assert "input 'image'" in update["error_message"]
    assert missing in update["error_message"]
    assert "not found" in update["error_message"]


def test_wrong_input_type_is_refused_before_processing(client: Client) -> None:
    """A text file where the image belongs is refused, naming the field and the types."""
    task_id = client.submit([client.put(b"hello", ".txt"), client.put(b"90", ".txt")])

    update = client.engine.final(task_id)

    assert update == {
        "status": "error",
        "data_out": [],
        "error_message": "input 'image': type text/plain is not one of image/png, image/jpeg",
    }


def test_wrong_number_of_inputs_is_reported(client: Client) -> None:
    """One input where the service takes two ends with an error naming both fields."""
    task_id = client.submit([client.put(image_bytes("PNG"), ".png")])

    update = client.engine.final(task_id)

    assert update["status"] == "error"
    assert update["error_message"] == "expected 2 input(s) (image, rotation), got 1"


def test_bad_rotation_names_the_allowed_values(client: Client) -> None:
    """A rotation of 45 ends with an error that lists 90, 180 and 270."""
    task_id = client.submit([client.put(image_bytes("PNG"), ".png"), client.put(b"45", ".txt")])

    update = client.engine.final(task_id)

    assert update["status"] == "error"
    assert "input 'rotation'" in update["error_message"]
    assert "90, 180, 270" in update["error_message"]


def test_a_foreseen_failure_shows_its_reason_in_the_run_log_without_a_traceback(
    client: Client,
) -> None:
    """The run's log in Prefect (what the UI shows) says why a rotation of 45 failed, and
    holds no traceback: tracebacks are for what nobody foresaw."""
    task_id = client.submit([client.put(image_bytes("PNG"), ".png"), client.put(b"45", ".txt")])
    assert client.engine.final(task_id)["status"] == "error"
    flow_run_id = client.flow_run_id(task_id)

    def run_log() -> list[str] | None:
        logs = plain_http.post(
            f"{client.stack.prefect_api}/logs/filter",
            json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_ASC"},
            timeout=10,
        ).json()
        messages = [str(log["message"]) for log in logs]
        # The summary is the run's last line of its own.
        return messages if any(m.startswith("summary: error") for m in messages) else None

    messages = wait_for(run_log, 60, "the run's summary line in Prefect")
    assert [m for m in messages if "input 'rotation'" in m and "90, 180, 270" in m]
    assert not [m for m in messages if "Traceback" in m], messages


def test_callback_answered_500_twice_then_200_gets_the_result(client: Client) -> None:
    """The result is PATCHed again after 5xx answers, until the engine takes it."""
    keys = [client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")]
    body = client.body(keys)
    task_id = body["task"]["id"]
    client.engine.answer(task_id, [500, 500, 200])

    assert plain_http.post(f"{client.stack.api}/compute", json=body, timeout=10).status_code == 200

    update = client.engine.final(task_id)

    assert update["status"] == "finished"
    attempts = client.engine.updates[task_id]
    # At least the two refused and the accepted one; a slow answer may add a retry.
    assert len(attempts) >= 3
    assert all(attempt == update for attempt in attempts)


def test_s3_briefly_unreachable_is_retried(client: Client) -> None:
    """Connections to S3 dropped at first are retried until the task finishes."""
    port = int(client.s3_endpoint.rsplit(":", 1)[1])
    proxy = Proxy(port, drop_first=2)
    try:
        keys = [client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")]
        task_id = client.submit(keys, s3_host=proxy.url)

        update = client.engine.final(task_id)

        assert update["status"] == "finished", update
        assert proxy.dropped == 2
    finally:
        proxy.close()


def test_s3_down_for_good_says_it_was_unreachable(client: Client) -> None:
    """When S3 never answers, the error names the host and says it was unreachable."""
    proxy = Proxy(1, drop_first=1000)
    try:
        task_id = client.submit([f"{uuid.uuid4()}.png", "r.txt"], s3_host=proxy.url)

        update = client.engine.final(task_id, timeout=90)

        assert update["status"] == "error"
        assert "S3 unreachable" in update["error_message"]
        assert proxy.url in update["error_message"]
        assert proxy.dropped > 1
    finally:
        proxy.close()


def test_missing_bucket_is_reported(client: Client) -> None:
    """A bucket that does not exist ends with an error that names it."""
    body = client.body([f"{uuid.uuid4()}.png", f"{uuid.uuid4()}.txt"])
    body["s3_bucket"] = "no-such-bucket"
    task_id = body["task"]["id"]
    client.engine.accept(task_id)
    assert plain_http.post(f"{client.stack.api}/compute", json=body, timeout=10).status_code == 200

    update = client.engine.final(task_id)

    assert update["status"] == "error"
    assert "bucket 'no-such-bucket'" in update["error_message"]


def test_text_behind_an_image_extension_is_reported(client: Client) -> None:
    """A `.png` key holding text ends with an error naming the image input."""
    task_id = client.submit([client.put(b"not an image", ".png"), client.put(b"90", ".txt")])

    update = client.engine.final(task_id)

    assert update["status"] == "error"
    assert update["error_message"] == "input 'image': content is not a readable image/png"
