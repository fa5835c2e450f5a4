"""The Prefect server's database vacuum, as the launcher derives it from RUN_RETENTION."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prefect.settings import Settings

from deployments.local import StartError, retention_settings

VACUUM_ENABLED = "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED"
VACUUM_RETENTION = "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD"
EVENTS_RETENTION = "PREFECT_SERVER_EVENTS_RETENTION_PERIOD"


def test_the_vacuum_keeps_runs_and_events_for_run_retention(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From RUN_RETENTION, variables that Prefect's own settings read as: flow runs and
    events vacuumed, both kept RUN_RETENTION seconds."""
    derived = retention_settings({"RUN_RETENTION": "3601"})
    for name, value in derived.items():
        monkeypatch.setenv(name, value)
    server = Settings().server
    assert server.services.db_vacuum.enabled_vacuum_types >= {"events", "flow_runs"}
    assert server.services.db_vacuum.retention_period == timedelta(seconds=3601)
    assert server.events.retention_period == timedelta(seconds=3601)


def test_without_run_retention_the_vacuum_keeps_a_week() -> None:
    """RUN_RETENTION unset is its default, a week."""
    derived = retention_settings({})
    assert derived[VACUUM_RETENTION] == derived[EVENTS_RETENTION] == "PT604800S"


def test_variables_the_caller_set_win() -> None:
    """A PREFECT_SERVER_* variable given explicitly is kept; the others still follow
    RUN_RETENTION."""
    env = {"RUN_RETENTION": "7200", EVENTS_RETENTION: "P30D", VACUUM_ENABLED: "events"}
    assert retention_settings(env) == {
        VACUUM_ENABLED: "events",
        VACUUM_RETENTION: "PT7200S",
        EVENTS_RETENTION: "P30D",
    }


@pytest.mark.parametrize(
    ("value", "reason"),
    [("3600", "must be more than 3600 seconds"), ("a week", "must be a number of seconds")],
)
def test_a_run_retention_prefect_refuses_stops_the_start_naming_it(value: str, reason: str) -> None:
    """The launcher says what is wrong with RUN_RETENTION before starting a server that
    would fail on it."""
    with pytest.raises(StartError, match=f"RUN_RETENTION {reason}"):
        retention_settings({"RUN_RETENTION": value})
