"""contract.models: the bodies of POST /compute and of the callback (CONTRACT.md §3, §4)."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import pytest
from pydantic import ValidationError

from contract.models import ServiceTask, TaskStatus, TaskUpdate

# CONTRACT.md §3, verbatim: a body captured from a real engine.
CAPTURED = """
{"s3_access_key_id": "minio", "s3_secret_access_key": "minio123", "s3_region": "eu-central-2",
 "s3_host": "http://127.0.0.1:9000", "s3_bucket": "engine",
 "task": {"created_at": "2026-11-27T22:17:55.280592", "updated_at": "2026-11-27T22:18:46.770513",
  "data_in": ["cbbcc363-01d6-4b88-9b9c-a514cb798d0c.txt", "00bbd7dd-e486-487a-ae5c-2a2901622b3b.png"],
  "data_out": null, "status": "pending", "service_id": "ffa7aa6c-105b-4568-9d49-c7862a7b140e",
  "pipeline_execution_id": null, "pipeline_step_id": null, "error_message": null,
  "id": "59e37edd-7d97-46be-9c5c-c269740c5dda"},
 "callback_url": "http://127.0.0.1:8080/tasks/59e37edd-7d97-46be-9c5c-c269740c5dda"}
"""  # noqa: E501

SECRET = "minio123"


def captured() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(CAPTURED)
    return body


def test_parses_the_captured_engine_body() -> None:
    """The body captured from a real engine parses field by field."""
    task = ServiceTask.model_validate_json(CAPTURED)
    assert task.s3_access_key_id == "minio"
    assert task.s3_secret_access_key == SECRET
    assert task.s3_region == "eu-central-2"
    assert task.s3_host.scheme == "http"
    assert task.s3_host.host == "127.0.0.1"
    assert task.s3_host.port == 9000
    assert task.s3_bucket == "engine"
    assert str(task.callback_url) == (
        "http://127.0.0.1:8080/tasks/59e37edd-7d97-46be-9c5c-c269740c5dda"
    )
    assert task.task.id == UUID("59e37edd-7d97-46be-9c5c-c269740c5dda")
    assert task.task.data_in == [
        "cbbcc363-01d6-4b88-9b9c-a514cb798d0c.txt",
        "00bbd7dd-e486-487a-ae5c-2a2901622b3b.png",
    ]
    assert task.task.data_out is None
    assert task.task.status is TaskStatus.PENDING
    assert task.task.service_id == UUID("ffa7aa6c-105b-4568-9d49-c7862a7b140e")
    assert task.task.pipeline_execution_id is None
    assert task.task.error_message is None


def test_ignores_unknown_keys_at_both_levels() -> None:
    """Keys the model does not know (top level and in `task`) are dropped, not refused."""
    body = captured()
    body["surprise"] = 1
    body["task"]["another_surprise"] = {"nested": True}
    task = ServiceTask.model_validate(body)
    assert "surprise" not in task.model_dump()
    assert "another_surprise" not in task.task.model_dump()
    assert "created_at" not in task.task.model_dump()
    assert "pipeline_step_id" not in task.task.model_dump()


def test_rejects_a_task_id_that_is_not_a_uuid() -> None:
    """A task id that is not a UUID is a validation error located at task.id."""
    body = captured()
    body["task"]["id"] = "not-a-uuid"
    with pytest.raises(ValidationError) as caught:
        ServiceTask.model_validate(body)
    assert [error["loc"] for error in caught.value.errors()] == [("task", "id")]


@pytest.mark.parametrize(
    "path",
    [
        ("s3_access_key_id",),
        ("s3_secret_access_key",),
        ("s3_region",),
        ("s3_host",),
        ("s3_bucket",),
        ("callback_url",),
        ("task",),
        ("task", "id"),
        ("task", "data_in"),
    ],
)
def test_rejects_a_missing_required_field(path: tuple[str, ...]) -> None:
    """Each required field, when absent, is reported missing at its location."""
    body = captured()
    parent = body
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    with pytest.raises(ValidationError) as caught:
        ServiceTask.model_validate(body)
    errors = caught.value.errors()
    assert [(error["loc"], error["type"]) for error in errors] == [(path, "missing")]


@pytest.mark.parametrize("field", ["callback_url", "s3_host"])
@pytest.mark.parametrize("url", ["file:///etc/passwd", "not a url", "ftp://127.0.0.1/x", ""])
def test_rejects_a_url_that_is_not_http(field: str, url: str) -> None:
    """callback_url and s3_host must be http(s) URLs."""
    body = captured()
    body[field] = url
    with pytest.raises(ValidationError) as caught:
        ServiceTask.model_validate(body)
    assert [error["loc"] for error in caught.value.errors()] == [(field,)]


def test_accepts_https_urls() -> None:
    """https is as good as http for both URLs."""
    body = captured()
    body["callback_url"] = "https://engine.example.org/tasks/59e37edd-7d97-46be-9c5c-c269740c5dda"
    body["s3_host"] = "https://s3.example.org"
    task = ServiceTask.model_validate(body)
    assert task.callback_url.scheme == "https"
    assert task.s3_host.scheme == "https"


def test_repr_and_str_hide_the_secret() -> None:
    """Neither repr nor str of a ServiceTask shows the S3 secret."""
    task = ServiceTask.model_validate_json(CAPTURED)
    assert SECRET not in repr(task)
    assert SECRET not in str(task)
    assert "minio" in repr(task)  # the access key id is not secret


def test_task_update_dumps_data_out_as_empty_list_by_default() -> None:
    """A TaskUpdate without outputs sends `data_out: []`, never null (CONTRACT.md §4)."""
    update = TaskUpdate(status=TaskStatus.PROCESSING)
    assert update.model_dump(mode="json") == {
        "status": "processing",
        "data_out": [],
        "error_message": None,
    }


def test_task_update_matches_the_contract_examples() -> None:
    """The two CONTRACT.md §4 example bodies round-trip through TaskUpdate unchanged."""
    finished = {
        "status": "finished",
        "data_out": ["b6fef912-946f-4025-b282-fc66efa3c00d.png"],
        "error_message": None,
    }
    error = {
        "status": "error",
        "data_out": [],
        "error_message": "input 'image': type text/plain is not one of image/png, image/jpeg",
    }
    for body in (finished, error):
        assert TaskUpdate.model_validate(body).model_dump(mode="json") == body


def test_task_update_default_lists_are_not_shared() -> None:
    """Two TaskUpdates never share one data_out list."""
    first = TaskUpdate(status=TaskStatus.FINISHED)
    first.data_out.append("x.png")
    assert TaskUpdate(status=TaskStatus.FINISHED).data_out == []


def test_task_status_values_match_the_contract() -> None:
    """The service-side TaskStatus values are exactly those of CONTRACT.md §2."""
    assert {status.value for status in TaskStatus} == {
        "pending",
        "fetching",
        "processing",
        "saving",
        "finished",
        "error",
        "scheduled",
        "skipped",
        "unavailable",
    }


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("../x.png", "'..'"),
        ("a/../../x.png", "'..'"),
        ("/etc/passwd", "absolute path"),
        ("a\\b.png", "backslashes"),
        ("a\nb.png", "control characters"),
        ("", "at least 1 character"),
        ("k" * 1025, "at most 1024 characters"),
    ],
)
def test_input_keys_must_stay_inside_the_bucket(key: str, words: str) -> None:
    """A key that is absolute, climbs with '..', or is odd is refused, naming data_in."""
    body = captured()
    body["task"]["data_in"] = [key]
    with pytest.raises(ValidationError) as caught:
        ServiceTask.model_validate(body)
    [error] = caught.value.errors()
    assert error["loc"] == ("task", "data_in", 0)
    assert words in error["msg"]


def test_a_key_in_a_folder_is_still_a_key() -> None:
    """`folder/name.png` stays inside the bucket and is accepted."""
    body = captured()
    body["task"]["data_in"] = ["folder/name.png"]
    assert ServiceTask.model_validate(body).task.data_in == ["folder/name.png"]
