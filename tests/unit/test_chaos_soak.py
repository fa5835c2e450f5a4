"""`make soak`'s load and its minute-by-minute summary."""

from __future__ import annotations

from typing import Any

import pytest
from dotenv import dotenv_values

from chaos.soak import max_tasks, parse, summarise
from deployments.local import ROOT


def test_the_soak_sends_at_the_chaos_streams_rate_with_the_services_own_max_tasks() -> None:
    args = parse([])
    assert (args.rate, args.in_flight) == (2.0, None)
    assert max_tasks(args) == int(dotenv_values(ROOT / ".env")["MAX_TASKS"] or 0)


def test_tasks_kept_in_flight_get_room_for_runs_not_yet_marked_ended() -> None:
    assert max_tasks(parse(["--in-flight", "40"])) == 80
    assert max_tasks(parse(["--in-flight", "40", "--max-tasks", "50"])) == 50


def test_a_rate_and_tasks_in_flight_together_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parse(["--rate", "3", "--in-flight", "8"])
    assert "not allowed with argument" in capsys.readouterr().err


def minute(n: int, rate: float, memory: int) -> dict[str, Any]:
    return {
        "minute": n,
        "ended": int(rate * 60),
        "tasks_per_s": rate,
        "p99_s": 1.0,
        "peak_rss_mb": memory,
        "peak_rss_mb_by_part": {"prefect server": memory - 100, "api": 100},
    }


def test_the_last_three_minutes_are_set_against_the_three_after_the_warm_up() -> None:
    rates = [9.0, 2.0, 2.0, 2.0, 5.0, 1.0, 1.0, 1.0]
    memory = [900, 500, 520, 510, 800, 540, 550, 530]
    rows = [minute(n + 1, r, m) for n, (r, m) in enumerate(zip(rates, memory, strict=True))]
    summary = summarise(rows, database=1000, accepted=10, results=0)
    assert summary["throughput_first"] == 2.0
    assert summary["throughput_last"] == 1.0
    assert summary["throughput_ratio"] == 0.5
    assert (summary["memory_first_mb"], summary["memory_last_mb"]) == (520, 550)
    assert summary["memory_growth"] == pytest.approx(550 / 520 - 1)
    assert summary["memory_by_part_mb"] == {"api": [100, 100], "prefect server": [420, 450]}
    assert summary["prefect_db_bytes_per_task"] == 100
