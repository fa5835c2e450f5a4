"""The S3 secret never lands in clear anywhere the stack writes or shows."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import S3_SECRET, WORKDIR
from tests.integration.conftest import Client, image_bytes

pytestmark = pytest.mark.integration


def test_secret_absent_from_parameters_database_and_logs(client: Client) -> None:
    """After a finished and a failed task: not in flow-run parameters, the DB files, the logs."""
    good = client.submit([client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")])
    bad = client.submit([f"{uuid.uuid4()}.png", client.put(b"90", ".txt")])
    assert client.engine.final(good)["status"] == "finished"
    assert client.engine.final(bad)["status"] == "error"

    runs = httpx.post(
        f"{client.stack.prefect_api}/flow_runs/filter",
        json={"flow_runs": {"name": {"any_": [good, bad]}}},
        timeout=10,
    ).json()
    assert len(runs) == 2
    for run in runs:
        parameters = run["parameters"]
        assert parameters["s3"]["sealed_credentials"]
        assert S3_SECRET not in str(parameters)
        assert "test-access-key" not in str(parameters)

    written = [path for path in WORKDIR.rglob("*") if path.is_file()]
    assert any(path.name.startswith("prefect.db") for path in written)
    assert client.stack.log_path in written
    for path in written:
        assert S3_SECRET.encode() not in path.read_bytes(), f"secret found in {path}"
    for update in client.engine.updates[good] + client.engine.updates[bad]:
        assert S3_SECRET not in str(update)
