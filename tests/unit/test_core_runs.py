"""core.runs: names the API and the worker agree on, and a flow run's parameters."""

from __future__ import annotations

import json
from uuid import UUID

from pydantic import SecretStr

from core.runs import (
    FLOW_ENTRYPOINT,
    FLOW_NAME,
    RunParameters,
    S3Target,
    deployment_name,
    work_pool_name,
)
from core.sealing import new_key
from core.settings import CommonSettings


def settings(work_pool: str) -> CommonSettings:
    return CommonSettings.model_validate(
        {"sealing_key": SecretStr(new_key()), "work_pool": work_pool}
    )


def parameters() -> RunParameters:
    return RunParameters(
        task_id=UUID("59e37edd-7d97-46be-9c5c-c269740c5dda"),
        data_in=["a.png", "b.txt"],
        s3=S3Target(
            host="http://127.0.0.1:9000",
            region="eu-central-2",
            bucket="engine",
            sealed_credentials="gAAAAAtoken",
        ),
        callback_url="http://127.0.0.1:8080/tasks/59e37edd-7d97-46be-9c5c-c269740c5dda",
    )


def test_work_pool_defaults_to_the_slug() -> None:
    """An empty WORK_POOL means a pool named after the service's slug."""
    assert work_pool_name(settings(""), "image-rotate") == "image-rotate"


def test_work_pool_override_wins() -> None:
    """A configured WORK_POOL is used whatever the slug."""
    assert work_pool_name(settings("shared-pool"), "image-rotate") == "shared-pool"


def test_deployment_is_named_after_the_slug() -> None:
    """One deployment per service, named after its slug."""
    assert deployment_name("image-rotate") == "image-rotate"


def test_flow_entrypoint_names_the_flow() -> None:
    """The entrypoint points at the `compute` function of flows/compute.py."""
    assert FLOW_NAME == "compute"
    assert FLOW_ENTRYPOINT == "flows/compute.py:compute"


def test_run_parameters_json_round_trip() -> None:
    """Parameters survive the JSON that Prefect stores them as."""
    original = parameters()
    stored = json.dumps(original.as_prefect_parameters())
    assert RunParameters.model_validate(json.loads(stored)) == original


def test_prefect_parameters_are_plain_json() -> None:
    """as_prefect_parameters gives only JSON types, the UUID as a string."""
    assert parameters().as_prefect_parameters() == {
        "task_id": "59e37edd-7d97-46be-9c5c-c269740c5dda",
        "data_in": ["a.png", "b.txt"],
        "s3": {
            "host": "http://127.0.0.1:9000",
            "region": "eu-central-2",
            "bucket": "engine",
            "sealed_credentials": "gAAAAAtoken",
        },
        "callback_url": "http://127.0.0.1:8080/tasks/59e37edd-7d97-46be-9c5c-c269740c5dda",
    }
