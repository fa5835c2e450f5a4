"""table-summary end to end: its own worker and API over the suite's Prefect server, S3
and stand-in engine, for this module only."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deployments.local import ROOT
from tests.integration.conftest import (
    SLOW_CALLBACK,
    Client,
    RunningStack,
    run_client,
    suite_s3_flags,
)

pytestmark = pytest.mark.integration
SERVICE_MODULE = "services.table_summary"


def test_table_summary_returns_json(other_client: Client) -> None:
    """A CSV in S3 ends `finished` with a JSON summary of its columns."""
    table = b"name,score\nada,3\nbob,\ncyd,5\n"
    task_id = other_client.submit([other_client.put(table, ".csv")])
    final = other_client.engine.final(task_id, SLOW_CALLBACK)
    assert final["status"] == "finished", final
    [summary_key] = final["data_out"]
    assert summary_key.endswith(".json")
    summary = json.loads(other_client.get(summary_key))
    assert (summary["rows"], summary["columns"]) == (3, 2)
    score = summary["column_summaries"][1]
    assert (score["type"], score["missing"], score["mean"]) == ("integer", 1, 4.0)


def test_table_summary_refuses_a_ragged_table(other_client: Client) -> None:
    """A row with too few fields ends with an `error` callback naming the input and line."""
    task_id = other_client.submit([other_client.put(b"a,b\n1,2\n3\n", ".csv")])
    final = other_client.engine.final(task_id, SLOW_CALLBACK)
    assert final["status"] == "error"
    assert final["error_message"] == "input 'table': line 3 has 1 field(s), the header has 2"


def test_client_summarises_the_example_table(
    other_service: RunningStack, s3_endpoint: str, tmp_path: Path
) -> None:
    """The client run on the example CSV saves `cities.summary.json` beside it."""
    table = tmp_path / "cities.csv"
    shutil.copy(ROOT / "examples" / "cities.csv", table)
    code, output = run_client(
        "--service", other_service.api, *suite_s3_flags(s3_endpoint), str(table)
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
