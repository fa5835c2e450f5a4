"""The client's calls to the service (as the engine makes them) and to Prefect's API."""

from __future__ import annotations

from typing import Any

import httpx

from contract.description import FieldDescription, type_of_key


class ServiceError(Exception):
    """The service refused the task or could not be reached; the message says which."""


def read_fields(
    http: httpx.Client,
) -> tuple[list[FieldDescription], list[FieldDescription]] | None:
    """The service's input and output fields; None from a service that does not say."""
    try:
        response = http.get("/description")
    except httpx.HTTPError as error:
        raise ServiceError(f"cannot reach the service at {http.base_url}: {error}") from None
    if response.status_code != 200:
        return None
    body = response.json()
    return (
        [FieldDescription.model_validate(field) for field in body["data_in_fields"]],
        [FieldDescription.model_validate(field) for field in body["data_out_fields"]],
    )


def mismatches(fields: list[FieldDescription], names: list[str]) -> list[str]:
    """What is wrong with pairing these files with these fields, by position."""
    if len(names) != len(fields):
        expected = ", ".join(field.name for field in fields)
        return [f"the service takes {len(fields)} file(s) ({expected}), got {len(names)}"]
    problems = []
    for field, name in zip(fields, names, strict=True):
        if type_of_key(name) not in field.type:
            allowed = ", ".join(field_type.value for field_type in field.type)
            problems.append(f"{name} for input '{field.name}': expected {allowed}")
    return problems


def submit(http: httpx.Client, body: dict[str, Any]) -> None:
    """POST /compute; ServiceError with the service's answer unless it is 200."""
    try:
        response = http.post("/compute", json=body)
    except httpx.HTTPError as error:
        raise ServiceError(f"cannot reach the service at {http.base_url}: {error}") from None
    if response.status_code != 200:
        raise ServiceError(f"the service answered {response.status_code}: {_detail(response)}")


def _detail(response: httpx.Response) -> str:
    """FastAPI's `detail`, or the whole body when there is none."""
    try:
        return str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return response.text


def status(http: httpx.Client, task_id: str) -> str | None:
    """The task's status, or None when the service does not answer right now."""
    try:
        response = http.get(f"/tasks/{task_id}/status")
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    found: str = response.json()["status"]
    return found


def task_detail(http: httpx.Client, task_id: str) -> dict[str, Any] | None:
    """The service's `GET /tasks/{id}`; None for a task it never accepted."""
    try:
        response = http.get(f"/tasks/{task_id}")
    except httpx.HTTPError as error:
        raise ServiceError(f"cannot reach the service at {http.base_url}: {error}") from None
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise ServiceError(f"the service answered {response.status_code}: {_detail(response)}")
    found: dict[str, Any] = response.json()
    return found


def schedule_again(prefect_api: str, flow_run_id: str) -> None:
    """Put an ended flow run back in the Scheduled state, as the UI's Retry and `prefect
    flow-run retry` do: a worker of its deployment runs it again, all of it."""
    url = f"{prefect_api.rstrip('/')}/flow_runs/{flow_run_id}/set_state"
    state = {"type": "SCHEDULED", "name": "Scheduled", "message": "Rerun with python -m client"}
    try:
        response = httpx.post(url, json={"state": state, "force": True}, timeout=10)
    except httpx.HTTPError as error:
        raise ServiceError(f"cannot reach Prefect at {prefect_api}: {error}") from None
    if response.status_code not in (200, 201):
        raise ServiceError(f"Prefect answered {response.status_code}: {_detail(response)}")
    outcome = response.json()
    if outcome.get("status") != "ACCEPT":
        reason = (outcome.get("details") or {}).get("reason")
        raise ServiceError(f"Prefect did not schedule the run again: {reason or outcome}")


def flow_run_page(prefect_api: str, task_id: str) -> str | None:
    """The Prefect UI page of the task's flow run (named after the task id), or None."""
    api = prefect_api.rstrip("/")
    try:
        response = httpx.post(
            f"{api}/flow_runs/filter",
            json={"flow_runs": {"name": {"any_": [task_id]}}, "limit": 1},
            timeout=10,
        )
        runs = response.json() if response.status_code == 200 else []
    except (httpx.HTTPError, ValueError):
        return None
    if not runs:
        return None
    return f"{api.removesuffix('/api')}/runs/flow-run/{runs[0]['id']}"
