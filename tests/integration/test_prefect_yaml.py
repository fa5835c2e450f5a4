"""`prefect.yaml` deploys the same deployment the worker serves."""

from __future__ import annotations

import pytest

from tests import plain_http
from tests.integration.conftest import Client, image_bytes

pytestmark = pytest.mark.integration


def test_prefect_deploy_updates_the_served_deployment(client: Client) -> None:
    """`prefect deploy --all` succeeds, keeps the deployment's id, pool and entrypoint, and
    tasks still run afterwards."""
    url = f"{client.stack.prefect_api}/deployments/name/compute/image-rotate"
    before = plain_http.get(url).json()

    client.prefect("deploy", "--all")

    after = plain_http.get(url).json()
    assert after["id"] == before["id"]
    assert after["work_pool_name"] == "image-rotate"
    assert after["entrypoint"] == "flows/compute.py:compute"
    task_id = client.submit([client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")])
    assert client.engine.final(task_id)["status"] == "finished"
