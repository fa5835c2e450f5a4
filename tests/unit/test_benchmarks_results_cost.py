"""benchmarks.results_cost measures what it says, on a tiny size (a smoke run)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.results_cost import measure


def test_a_result_is_keyed_written_and_read_back(tmp_path: Path) -> None:
    figures = measure(0.01, repeat=1, folder=tmp_path)
    assert set(figures) == {"key", "write", "read", "stored_mb"}
    assert all(value > 0 for value in figures.values())
    assert len(list(tmp_path.iterdir())) == 1
