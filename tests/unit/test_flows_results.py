"""flows.results: the cache keys, the deliveries of a run's callback, expired results."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from prefect.client.schemas.objects import FlowRun, State, StateType

from contract.description import FieldType
from core.runs import S3Location
from core.settings import WorkerSettings
from flows import results
from services.base import Blob

PNG = FieldType.IMAGE_PNG
TARGET = S3Location(host="http://s3.example:9000", region="eu", bucket="engine")


def blobs(**contents: bytes) -> dict[str, Blob]:
    return {name: Blob(data, PNG) for name, data in contents.items()}


def test_process_key_is_what_the_inputs_contain_and_the_service() -> None:
    key = results.process_key("rotate", "1", blobs(image=b"a", angle=b"90"))
    assert key == results.process_key("rotate", "1", blobs(angle=b"90", image=b"a"))
    assert key != results.process_key("rotate", "1", blobs(image=b"b", angle=b"90"))
    assert key != results.process_key("rotate", "2", blobs(image=b"a", angle=b"90"))
    assert key != results.process_key("other", "1", blobs(image=b"a", angle=b"90"))
    # A field's name and type are part of what it contains.
    assert key != results.process_key("rotate", "1", blobs(picture=b"a", angle=b"90"))
    retyped = {**blobs(angle=b"90"), "image": Blob(b"a", FieldType.IMAGE_JPEG)}
    assert key != results.process_key("rotate", "1", retyped)


def test_parts_cannot_run_into_each_other() -> None:
    assert results.process_key("ab", "c", {}) != results.process_key("a", "bc", {})


def test_upload_key_is_the_flow_run_the_place_and_the_outputs() -> None:
    run = uuid4()
    key = results.upload_key(run, TARGET, blobs(image=b"x"))
    assert key == results.upload_key(run, TARGET, blobs(image=b"x"))
    assert key != results.upload_key(uuid4(), TARGET, blobs(image=b"x"))
    assert key != results.upload_key(run, TARGET, blobs(image=b"y"))
    elsewhere = TARGET.model_copy(update={"bucket": "other"})
    assert key != results.upload_key(run, elsewhere, blobs(image=b"x"))


def state(kind: StateType, name: str, minutes: int, message: str | None = None) -> State[Any]:
    at = datetime(2026, 12, 6, tzinfo=UTC) + timedelta(minutes=minutes)
    return State(type=kind, name=name, timestamp=at, message=message)


class History:
    """A client that answers `read_flow_run_states` with the given states."""

    def __init__(self, states: list[State[Any]]) -> None:
        self.states = states

    async def read_flow_run_states(self, flow_run_id: object) -> list[State[Any]]:
        return list(reversed(self.states))  # the order is the reader's to fix


def delivery_after(states: list[State[Any]]) -> str:
    run = FlowRun(flow_id=uuid4(), run_count=2)
    client: Any = History(states)
    return asyncio.run(results.delivery_of(client, run)).rsplit("/", 1)[1]


S, P, R = StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING
C, F, X = StateType.COMPLETED, StateType.FAILED, StateType.CRASHED


def test_a_first_execution_is_the_first_delivery() -> None:
    assert (
        delivery_after([state(S, "Scheduled", 0), state(P, "Pending", 1), state(R, "Running", 2)])
        == "0"
    )


def test_the_service_running_a_run_again_keeps_its_delivery() -> None:
    """A dead worker's run: Crashed by the reaper, then scheduled again by it."""
    taken_back = results.rescheduled("its worker (w) stopped answering")
    history = [
        state(S, "Scheduled", 0),
        state(R, "Running", 1),
        state(X, "Crashed", 2),
        state(S, "AwaitingRetry", 3, taken_back.message),
        state(R, "Running", 4),
    ]
    assert delivery_after(history) == "0"


def test_each_retry_by_a_person_is_a_new_delivery() -> None:
    """The UI's Retry (AwaitingRetry) and the CLI's (Scheduled), each out of an end."""
    history = [
        state(S, "Scheduled", 0),
        state(R, "Running", 1),
        state(F, "Failed", 2),
        state(S, "AwaitingRetry", 3, "Retry from the UI"),
        state(R, "Running", 4),
        state(C, "Completed", 5),
        state(S, "Scheduled", 6, "Retried via CLI"),
        state(S, "Late", 7),
        state(R, "Running", 8),
    ]
    assert delivery_after(history) == "2"


def test_expired_results_are_deleted_and_fresh_ones_kept(tmp_path: Path) -> None:
    old, fresh = tmp_path / "process-old", tmp_path / "nested" / "notify-fresh"
    fresh.parent.mkdir()
    for path in (old, fresh):
        path.write_bytes(b"{}")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))

    assert asyncio.run(results.delete_expired(tmp_path, ttl=600)) == 1
    assert not old.exists()
    assert fresh.exists()


def test_a_missing_results_folder_is_nothing_to_delete(tmp_path: Path) -> None:
    assert asyncio.run(results.delete_expired(tmp_path / "none", ttl=1)) == 0


def test_local_storage_is_a_folder_and_s3_needs_saving() -> None:
    local = WorkerSettings(result_storage=".data/results")
    assert results.storage(local) == Path(".data/results").resolve()
    remote = WorkerSettings(result_storage="s3://kept/results")
    with pytest.raises(RuntimeError, match="saved"):
        results.storage(remote)
