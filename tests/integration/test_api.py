"""The HTTP contract of CONTRACT.md §1, answer by answer."""

from __future__ import annotations

import json
import uuid

import pytest

from tests import plain_http
from tests.conftest import S3_SECRET
from tests.integration.conftest import Client, extra_api, image_bytes

pytestmark = pytest.mark.integration


def test_status_says_the_service_is_available(client: Client) -> None:
    """GET /status answers the reference service's exact body."""
    response = plain_http.get(f"{client.stack.api}/status")
    assert response.status_code == 200
    assert response.json() == {"status": "Service is available"}


def test_root_redirects_to_the_docs(client: Client) -> None:
    """GET / redirects to /docs, which serves the API documentation."""
    response = plain_http.get(f"{client.stack.api}/")
    assert response.is_redirect
    assert response.headers["location"] == "/docs"
    assert plain_http.get(f"{client.stack.api}/docs").status_code == 200


def test_unknown_task_is_404_with_the_engine_detail(client: Client) -> None:
    """A task id never seen answers 404 `Task <id> not found`."""
    task_id = uuid.uuid4()
    response = client.status(str(task_id))
    assert response.status_code == 404
    assert response.json() == {"detail": f"Task {task_id} not found"}


def test_non_uuid_task_id_is_422(client: Client) -> None:
    """A task id that is not a UUID answers 422 naming the path parameter."""
    response = client.status("not-a-uuid")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "task_id"]


def _without(body: dict[str, object], key: str) -> dict[str, object]:
    return {k: v for k, v in body.items() if k != key}


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        (lambda b: _without(b, "s3_bucket"), ["body", "s3_bucket"]),
        (lambda b: _without(b, "callback_url"), ["body", "callback_url"]),
        (lambda b: {**b, "task": {**b["task"], "id": "nope"}}, ["body", "task", "id"]),
        (lambda b: {**b, "callback_url": "not a url"}, ["body", "callback_url"]),
        (lambda b: {**b, "s3_host": "ftp://example"}, ["body", "s3_host"]),
        (lambda b: {**b, "task": {**b["task"], "data_in": "a.png"}}, ["body", "task", "data_in"]),
    ],
    ids=["missing-field", "missing-callback", "bad-uuid", "non-url-callback", "ftp-s3", "data-in"],
)
def test_malformed_task_is_422_naming_the_field(
    client: Client, change: object, loc: list[str]
) -> None:
    """A body that is not a ServiceTask answers 422 naming the field, and no run starts."""
    body = client.body(["a.png", "b.txt"])
    assert callable(change)
    response = plain_http.post(f"{client.stack.api}/compute", json=change(body))
    assert response.status_code == 422
    assert loc in [error["loc"] for error in response.json()["detail"]]
    assert client.status(body["task"]["id"]).status_code == 404


def test_422_does_not_echo_the_secret(client: Client) -> None:
    """A refused body's error names the field but never repeats the S3 secret."""
    body = client.body(["a.png", "b.txt"])
    del body["task"]
    response = plain_http.post(f"{client.stack.api}/compute", json=body)
    assert response.status_code == 422
    assert S3_SECRET not in response.text
    assert ["body", "task"] in [error["loc"] for error in response.json()["detail"]]


@pytest.mark.parametrize(
    ("keys", "loc", "words"),
    [
        (["../secret.png", "b.txt"], ["body", "task", "data_in", 0], "'..'"),
        (["a.png", "/etc/passwd"], ["body", "task", "data_in", 1], "absolute path"),
        ([f"{i}.png" for i in range(5000)], ["body", "task", "data_in"], "at most 64"),
    ],
    ids=["dot-dot", "absolute", "thousands"],
)
def test_hostile_input_keys_are_422(
    client: Client, keys: list[str], loc: list[object], words: str
) -> None:
    """Keys that climb out of the bucket, and lists of thousands, are refused by name."""
    response = plain_http.post(f"{client.stack.api}/compute", json=client.body(keys))
    assert response.status_code == 422
    [error] = [error for error in response.json()["detail"] if error["loc"] == loc]
    assert words in error["msg"]


@pytest.mark.parametrize("field", ["callback_url", "s3_host"])
def test_file_urls_are_422(client: Client, field: str) -> None:
    """A `file://` callback or S3 host is refused before anything is called."""
    body = {**client.body(["a.png", "b.txt"]), field: "file:///etc/passwd"}
    response = plain_http.post(f"{client.stack.api}/compute", json=body)
    assert response.status_code == 422
    assert ["body", field] in [error["loc"] for error in response.json()["detail"]]


def test_oversized_body_is_413(client: Client) -> None:
    """A body over MAX_BODY_BYTES is refused with 413, and the service keeps serving."""
    body = client.body(["a.png", "b.txt"])
    body["padding"] = "x" * 2_000_000
    response = plain_http.post(f"{client.stack.api}/compute", json=body)
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]
    assert plain_http.get(f"{client.stack.api}/status").status_code == 200


def test_hosts_outside_the_allowlist_are_refused(client: Client) -> None:
    """With ALLOWED_HOSTS set, a callback or S3 host not in it is 422 naming the field and
    nothing is accepted; a listed host is accepted."""
    engine_host = f"127.0.0.1:{client.engine.server.port}"
    s3_host = client.s3_endpoint.removeprefix("http://")
    body = client.body([client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")])
    client.engine.accept(body["task"]["id"])

    with extra_api(client, ALLOWED_HOSTS=json.dumps([engine_host])) as (_, api):
        refused = plain_http.post(f"{api}/compute", json=body)
        assert refused.status_code == 422
        assert [error["loc"] for error in refused.json()["detail"]] == [["body", "s3_host"]]
        assert plain_http.get(f"{api}/tasks/{body['task']['id']}/status").status_code == 404

    with extra_api(client, ALLOWED_HOSTS=json.dumps([engine_host, s3_host])) as (_, api):
        assert plain_http.post(f"{api}/compute", json=body).status_code == 200
    assert client.engine.final(body["task"]["id"])["status"] == "finished"
