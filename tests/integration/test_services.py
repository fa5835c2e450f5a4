"""image-analysis and table-summary end to end: each its own worker and API, on the real
Prefect server, S3 and stand-in engine of the suite."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from deployments.local import ROOT
from tests.integration.conftest import (
    Client,
    Engine,
    RunningStack,
    image_bytes,
    service_stack,
    wait_for,
)
from tests.integration.test_client import run, suite_s3

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def image_analysis(stack: RunningStack) -> Iterator[RunningStack]:
    with service_stack("services.image_analysis") as running:
        yield running


@pytest.fixture(scope="module")
def table_summary(stack: RunningStack) -> Iterator[RunningStack]:
    with service_stack("services.table_summary") as running:
        yield running


def test_image_analysis_returns_a_thumbnail_and_statistics(
    image_analysis: RunningStack, engine: Engine, s3_endpoint: str
) -> None:
    """A PNG in S3 ends `finished` with a PNG thumbnail and JSON statistics, in the order of
    the output fields, and the status says finished."""
    client = Client(image_analysis, engine, s3_endpoint)
    task_id = client.submit([client.put(image_bytes("PNG", (300, 150)), ".png")])
    final = engine.final(task_id)
    assert final["status"] == "finished", final
    thumbnail_key, statistics_key = final["data_out"]
    assert thumbnail_key.endswith(".png")
    assert statistics_key.endswith(".json")
    with Image.open(io.BytesIO(client.get(thumbnail_key))) as thumbnail:
        assert (thumbnail.format, thumbnail.size) == ("PNG", (128, 64))
    statistics = json.loads(client.get(statistics_key))
    assert (statistics["width"], statistics["height"]) == (300, 150)
    assert len(statistics["dominant_colours"]) == 4
    # The callback goes out in the run's last stage, just before the run completes.
    finished = {"status": "finished"}
    wait_for(lambda: client.status(task_id).json() == finished, 30, "the status finished")


def test_image_analysis_refuses_text_posing_as_a_png(
    image_analysis: RunningStack, engine: Engine, s3_endpoint: str
) -> None:
    """Text stored under a .png key ends with an `error` callback naming the input."""
    client = Client(image_analysis, engine, s3_endpoint)
    task_id = client.submit([client.put(b"not an image", ".png")])
    assert engine.final(task_id) == {
        "status": "error",
        "data_out": [],
        "error_message": "input 'image': content is not a readable image/png",
    }


def test_table_summary_returns_json(
    table_summary: RunningStack, engine: Engine, s3_endpoint: str
) -> None:
    """A CSV in S3 ends `finished` with a JSON summary of its columns."""
    client = Client(table_summary, engine, s3_endpoint)
    table = b"name,score\nada,3\nbob,\ncyd,5\n"
    task_id = client.submit([client.put(table, ".csv")])
    final = engine.final(task_id)
    assert final["status"] == "finished", final
    [summary_key] = final["data_out"]
    assert summary_key.endswith(".json")
    summary = json.loads(client.get(summary_key))
    assert (summary["rows"], summary["columns"]) == (3, 2)
    score = summary["column_summaries"][1]
    assert (score["type"], score["missing"], score["mean"]) == ("integer", 1, 4.0)


def test_table_summary_refuses_a_ragged_table(
    table_summary: RunningStack, engine: Engine, s3_endpoint: str
) -> None:
    """A row with too few fields ends with an `error` callback naming the input and line."""
    client = Client(table_summary, engine, s3_endpoint)
    task_id = client.submit([client.put(b"a,b\n1,2\n3\n", ".csv")])
    final = engine.final(task_id)
    assert final["status"] == "error"
    assert final["error_message"] == "input 'table': line 3 has 1 field(s), the header has 2"


def test_client_names_each_output_after_its_field(
    image_analysis: RunningStack, s3_endpoint: str, tmp_path: Path
) -> None:
    """The client run on the example photo saves `photo.thumbnail.png` and
    `photo.statistics.json` beside it."""
    photo = tmp_path / "photo.png"
    shutil.copy(ROOT / "examples" / "photo.png", photo)
    code, output = run("--service", image_analysis.api, *suite_s3(s3_endpoint), str(photo))
    assert code == 0, output
    with Image.open(tmp_path / "photo.thumbnail.png") as thumbnail:
        assert thumbnail.size == (128, 85)
    statistics = json.loads((tmp_path / "photo.statistics.json").read_text())
    assert (statistics["width"], statistics["height"]) == (192, 128)


def test_client_summarises_the_example_table(
    table_summary: RunningStack, s3_endpoint: str, tmp_path: Path
) -> None:
    """The client run on the example CSV saves `cities.summary.json` beside it."""
    table = tmp_path / "cities.csv"
    shutil.copy(ROOT / "examples" / "cities.csv", table)
    code, output = run("--service", table_summary.api, *suite_s3(s3_endpoint), str(table))
    assert code == 0, output
    summary = json.loads((tmp_path / "cities.summary.json").read_text())
    assert (summary["rows"], summary["columns"]) == (10, 6)
    population = summary["column_summaries"][2]
    assert (population["name"], population["type"], population["max"]) == (
        "population",
        "integer",
        421878,
    )
