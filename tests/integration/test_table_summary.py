"""table-summary end to end: its own worker and API over the suite's Prefect server, S3
and stand-in engine, for this module only."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments.local import ROOT
from tests.integration.conftest import (
    SLOW_CALLBACK,
    Client,
    Engine,
    RunningStack,
    run_client,
    service_stack,
    suite_s3_flags,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def table_summary(stack: RunningStack) -> Iterator[RunningStack]:
    with service_stack("services.table_summary") as running:
        yield running


def test_table_summary_returns_json(
    table_summary: RunningStack, engine: Engine, s3_endpoint: str
) -> None:
    """A CSV in S3 ends `finished` with a JSON summary of its columns."""
    client = Client(table_summary, engine, s3_endpoint)
    table = b"name,score\nada,3\nbob,\ncyd,5\n"
    task_id = client.submit([client.put(table, ".csv")])
    final = engine.final(task_id, SLOW_CALLBACK)
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
    final = engine.final(task_id, SLOW_CALLBACK)
    assert final["status"] == "error"
    assert final["error_message"] == "input 'table': line 3 has 1 field(s), the header has 2"


def test_client_summarises_the_example_table(
    table_summary: RunningStack, s3_endpoint: str, tmp_path: Path
) -> None:
    """The client run on the example CSV saves `cities.summary.json` beside it."""
    table = tmp_path / "cities.csv"
    shutil.copy(ROOT / "examples" / "cities.csv", table)
    code, output = run_client(
        "--service", table_summary.api, *suite_s3_flags(s3_endpoint), str(table)
    )
    assert code == 0, output
    summary = json.loads((tmp_path / "cities.summary.json").read_text())
    assert (summary["rows"], summary["columns"]) == (10, 6)
    population = summary["column_summaries"][2]
    assert (population["name"], population["type"], population["max"]) == (
        "population",
        "integer",
        421878,
    )
