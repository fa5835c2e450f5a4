"""The HTTP contract of CONTRACT.md §1, answer by answer."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import S3_SECRET
from tests.integration.conftest import Client

pytestmark = pytest.mark.integration


def test_status_says_the_service_is_available(client: Client) -> None:
    """GET /status answers the reference service's exact body."""
    response = httpx.get(f"{client.stack.api}/status")
    assert response.status_code == 200
    assert response.json() == {"status": "Service is available"}


def test_root_redirects_to_the_docs(client: Client) -> None:
    """GET / redirects to /docs, which serves the API documentation."""
    response = httpx.get(f"{client.stack.api}/")
    assert response.is_redirect
    assert response.headers["location"] == "/docs"
    assert httpx.get(f"{client.stack.api}/docs").status_code == 200


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
    response = httpx.post(f"{client.stack.api}/compute", json=change(body))
    assert response.status_code == 422
    assert loc in [error["loc"] for error in response.json()["detail"]]
    assert client.status(body["task"]["id"]).status_code == 404


def test_422_does_not_echo_the_secret(client: Client) -> None:
    """A refused body's error names the field but never repeats the S3 secret."""
    body = client.body(["a.png", "b.txt"])
    del body["task"]
    response = httpx.post(f"{client.stack.api}/compute", json=body)
    assert response.status_code == 422
    assert S3_SECRET not in response.text
    assert ["body", "task"] in [error["loc"] for error in response.json()["detail"]]
