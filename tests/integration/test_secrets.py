"""The S3 secret never lands in clear anywhere the stack writes or shows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests import plain_http
from tests.conftest import S3_SECRET, WORKDIR
from tests.integration.conftest import ACCESS_KEY, Client, image_bytes, wait_for

pytestmark = pytest.mark.integration
STAGES = {"fetch", "process", "upload", "notify"}


def test_secret_absent_from_parameters_database_and_logs(client: Client) -> None:
    """After a finished and a failed task: not in flow-run parameters, the DB files, the logs,
    the kept results; those hold neither the access key nor the sealed credentials. (The
    files of the distributed cluster, written in another xdist process, are scanned by
    test_distributed.py's test_secret_absent_from_the_clusters_files.)"""
    good = client.submit([client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")])
    bad = client.submit([f"{uuid.uuid4()}.png", client.put(b"90", ".txt")])
    assert client.engine.final(good)["status"] == "finished"
    assert client.engine.final(bad)["status"] == "error"

    runs = plain_http.post(
        f"{client.stack.prefect_api}/flow_runs/filter",
        json={"flow_runs": {"name": {"any_": [good, bad]}}},
        timeout=10,
    ).json()
    assert len(runs) == 2
    for run in runs:
        parameters = run["parameters"]
        assert parameters["s3"]["sealed_credentials"]
        assert S3_SECRET not in str(parameters)
        assert ACCESS_KEY not in str(parameters)

    written = [path for path in WORKDIR.rglob("*") if path.is_file()]
    assert any(path.name.startswith("prefect.db") for path in written)
    assert client.stack.log_path in written
    for path in written:
        assert S3_SECRET.encode() not in path.read_bytes(), f"secret found in {path}"
    kept = [path for path in written if WORKDIR / "results" in path.parents]
    assert kept, "no result kept"
    sealed = [run["parameters"]["s3"]["sealed_credentials"].encode() for run in runs]
    for path in kept:
        content = path.read_bytes()
        assert ACCESS_KEY.encode() not in content, f"access key found in {path}"
        assert not any(seal in content for seal in sealed), f"sealed credentials in {path}"
    for update in client.engine.updates[good] + client.engine.updates[bad]:
        assert S3_SECRET not in str(update)


def test_secret_absent_from_task_runs_and_events(client: Client) -> None:
    """Every task run and every event Prefect holds (this suite's whole history, the
    stages of a finished task's run among them) is free of the secret and the access key;
    task runs and their events hold not even the sealed credentials."""
    task_id = client.submit([client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")])
    assert client.engine.final(task_id)["status"] == "finished"
    flow_run = client.flow_run(task_id)
    sealed = flow_run["parameters"]["s3"]["sealed_credentials"]

    def stages_recorded() -> bool:
        return {run["name"] for run in _task_runs(client, flow_run["id"])} == STAGES

    wait_for(stages_recorded, 30, "the four task runs of the run to be recorded")
    task_runs = list(_all(client, "/task_runs/filter"))
    events = list(_events(client))
    task_run_events = [
        event
        for event in events
        if event["resource"]["prefect.resource.id"].startswith("prefect.task-run.")
    ]
    assert task_runs
    assert task_run_events
    for what, records, secrets in (
        ("task runs", task_runs, (S3_SECRET, ACCESS_KEY, sealed)),
        ("task-run events", task_run_events, (S3_SECRET, ACCESS_KEY, sealed)),
        ("events", events, (S3_SECRET, ACCESS_KEY)),
    ):
        text = json.dumps(records)
        for secret in secrets:
            assert secret not in text, f"a credential found in Prefect's {what}"


def _task_runs(client: Client, flow_run_id: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = plain_http.post(
        f"{client.stack.prefect_api}/task_runs/filter",
        json={"flow_runs": {"id": {"any_": [flow_run_id]}}},
        timeout=10,
    ).json()
    return runs


def _all(client: Client, path: str, page: int = 200) -> Iterator[dict[str, Any]]:
    """Every record of a `/filter` endpoint, page by page."""
    offset = 0
    while True:
        records = plain_http.post(
            f"{client.stack.prefect_api}{path}", json={"limit": page, "offset": offset}, timeout=30
        ).json()
        yield from records
        if len(records) < page:
            return
        offset += page


def _events(client: Client) -> Iterator[dict[str, Any]]:
    """Every event the server stored, page by page."""
    answer = plain_http.post(
        f"{client.stack.prefect_api}/events/filter",
        json={"filter": {"occurred": {"since": "2000-01-01T00:00:00Z"}}, "limit": 50},
        timeout=30,
    ).json()
    while True:
        yield from answer["events"]
        if not answer.get("next_page"):
            return
        answer = plain_http.get(answer["next_page"], timeout=30).json()
