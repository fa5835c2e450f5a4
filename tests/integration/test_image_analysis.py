"""image-analysis end to end: its own worker and API over the suite's Prefect server, S3
and stand-in engine, for this module only."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from deployments.local import ROOT
from tests.integration.conftest import (
    SLOW_CALLBACK,
    Client,
    RunningStack,
    image_bytes,
    run_client,
    suite_s3_flags,
    wait_for,
)

pytestmark = pytest.mark.integration
SERVICE_MODULE = "services.image_analysis"


def test_image_analysis_returns_a_thumbnail_and_statistics(other_client: Client) -> None:
    """A PNG in S3 ends `finished` with a PNG thumbnail and JSON statistics, in the order of
    the output fields, and the status says finished."""
    task_id = other_client.submit([other_client.put(image_bytes("PNG", (300, 150)), ".png")])
    final = other_client.engine.final(task_id, SLOW_CALLBACK)
    assert final["status"] == "finished", final
    thumbnail_key, statistics_key = final["data_out"]
    assert thumbnail_key.endswith(".png")
    assert statistics_key.endswith(".json")
    with Image.open(io.BytesIO(other_client.get(thumbnail_key))) as thumbnail:
        assert (thumbnail.format, thumbnail.size) == ("PNG", (128, 64))
    statistics = json.loads(other_client.get(statistics_key))
    assert (statistics["width"], statistics["height"]) == (300, 150)
    assert len(statistics["dominant_colours"]) == 4
    # The callback goes out in the run's last stage, just before the run completes.
    finished = {"status": "finished"}
    wait_for(lambda: other_client.status(task_id).json() == finished, SLOW_CALLBACK, "finished")


def test_image_analysis_refuses_text_posing_as_a_png(other_client: Client) -> None:
    """Text stored under a .png key ends with an `error` callback naming the input."""
    task_id = other_client.submit([other_client.put(b"not an image", ".png")])
    assert other_client.engine.final(task_id, SLOW_CALLBACK) == {
        "status": "error",
        "data_out": [],
        "error_message": "input 'image': content is not a readable image/png",
    }


def test_client_names_each_output_after_its_field(
    other_service: RunningStack, s3_endpoint: str, tmp_path: Path
) -> None:
    """The client run on the example photo saves `photo.thumbnail.png` and
    `photo.statistics.json` beside it."""
    photo = tmp_path / "photo.png"
    shutil.copy(ROOT / "examples" / "photo.png", photo)
    code, output = run_client(
        "--service", other_service.api, *suite_s3_flags(s3_endpoint), str(photo)
    )
    assert code == 0, output
    with Image.open(tmp_path / "photo.thumbnail.png") as thumbnail:
        assert thumbnail.size == (128, 85)
    statistics = json.loads((tmp_path / "photo.statistics.json").read_text())
    assert (statistics["width"], statistics["height"]) == (192, 128)
