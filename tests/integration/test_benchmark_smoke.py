"""The benchmark still runs end to end (a few tasks), so `make bench` cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import prefect_calls, run, scale
from tests.conftest import NOT_MEASURED

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def stacks_not_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmarks' stacks run the code the suite's own stack measures already."""
    for key, value in NOT_MEASURED.items():
        monkeypatch.setenv(key, value)


def test_benchmark_writes_every_figure(tmp_path: Path) -> None:
    """A small run starts its own stack, runs every case and writes every figure, all tasks done."""
    assert run.main(["--tasks", "5", "--repeat", "1", "--single", "1", "--out", str(tmp_path)]) == 0

    report = json.loads((tmp_path / "bench.json").read_text())
    figures = {figure["key"]: figure for figure in report["figures"]}
    assert set(figures) == {
        "burst_pooled_p50_ms",
        "burst_pooled_p99_ms",
        "burst_pooled_rejected",
        "burst_new_p50_ms",
        "burst_new_p99_ms",
        "burst_new_rejected",
        "single_p50_ms",
        "single_back_to_back_p50_ms",
        "wall_s",
        "throughput_tps",
        "throughput_new_tps",
        "peak_rss_mb",
        "overhead_ratio",
        "server_cpu_ratio",
        "worker_cpu_ms_per_run",
        "server_cpu_ms_per_run",
        "task_run_lag_max_s",
        "task_runs_unrecorded",
        "tasks_missing",
    }
    missing = [key for key, figure in figures.items() if figure["measured"] is None]
    assert not missing, f"figures without a value: {missing}"
    assert figures["tasks_missing"]["measured"] == 0
    assert figures["task_runs_unrecorded"]["measured"] == 0
    assert figures["peak_rss_mb"]["measured"] > 0
    assert report["machine"]["nproc"] >= 1
    assert report["machine"]["memory_total_mb"] > 0
    (repetition,) = report["repetitions"]
    assert len(repetition["burst_pooled"]["answer_ms"]) == 5
    assert set(repetition["burst_pooled"]["peak_rss_by_role_mb"]) == {
        "prefect_server",
        "worker",
        "api",
    }


def test_prefect_calls_benchmark_writes_every_call(tmp_path: Path) -> None:
    """A small run of `make bench-prefect` makes every call (each state change accepted)
    and writes the server's CPU for each, and their sum per flow run."""
    assert prefect_calls.main(["--runs", "10", "--repeat", "1", "--out", str(tmp_path)]) == 0

    report = json.loads((tmp_path / "prefect_calls.json").read_text())
    assert set(report["per_call_ms"]) == {name for name, _ in prefect_calls.CALLS}
    assert all(value >= 0 for value in report["per_call_ms"].values())
    assert report["per_run_total_ms"] > 0
    assert report["per_run_total_ms"] == pytest.approx(sum(report["per_run_ms"].values()))


# Moved from test_distributed.py: it starts a cluster of its own, not that module's.
@pytest.mark.distributed
def test_scale_benchmark_measures_each_worker_count(tmp_path: Path) -> None:
    """A small `make bench-scale` starts its cluster, adds workers and reports every count,
    all tasks done."""
    assert (
        scale.main(["--workers", "1", "2", "--tasks", "3", "--repeat", "1", "--out", str(tmp_path)])
        == 0
    )

    report = json.loads((tmp_path / "scale.json").read_text())
    assert [row["workers"] for row in report["rows"]] == [1, 2]
    assert all(row["missing"] == 0 and row["tasks_per_s"] > 0 for row in report["rows"])
