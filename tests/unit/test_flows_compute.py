"""What a run logs as it ends: its summary line, and its failures' tracebacks or not."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from flows.compute import UNDELIVERED_OUTCOME, RunRecord, quiet_foreseen_failures
from flows.errors import PermanentError, TransientError


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def task_run_log() -> Iterator[tuple[logging.Logger, Kept]]:
    """Prefect's task-run logger with the worker's filter on it, and what reaches its
    handlers."""
    logger = logging.getLogger("prefect.task_runs")
    kept = Kept()
    logger.addHandler(kept)
    filters = list(logger.filters)
    quiet_foreseen_failures()
    try:
        yield logger, kept
    finally:
        logger.removeHandler(kept)
        logger.filters[:] = filters


def log_failure(logger: logging.Logger, error: Exception) -> None:
    """Log `error` as Prefect's task engine does when a task run fails."""
    try:
        raise error
    except Exception:
        logger.error("Task run failed: %r", error, exc_info=True, extra={"send_to_api": False})


@pytest.mark.parametrize(
    "error", [PermanentError("input 'rotation': 45"), TransientError("S3 unreachable")]
)
def test_a_foreseen_failure_is_logged_with_its_reason_only(
    task_run_log: tuple[logging.Logger, Kept], error: Exception
) -> None:
    """A TaskError's line reaches every handler (the terminal's, Prefect's) without a
    traceback, its reason in the message."""
    logger, kept = task_run_log
    log_failure(logger, error)

    [record] = kept.records
    assert record.exc_info is None
    assert str(error) in record.getMessage()
    assert "Traceback" not in logging.Formatter().format(record)


def test_an_unforeseen_failure_keeps_its_traceback(
    task_run_log: tuple[logging.Logger, Kept],
) -> None:
    """Any other exception is logged with its traceback: that is what a bug needs."""
    logger, kept = task_run_log
    log_failure(logger, KeyError("nobody saw this coming"))

    [record] = kept.records
    assert record.exc_info is not None
    assert "Traceback" in logging.Formatter().format(record)


def test_the_summary_says_the_execution_time_and_the_time_since_the_hand_off_apart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run handed to Prefect long ago (a rerun) and executed just now says its own
    time, not the time since the hand-off, as how long it took."""
    record = RunRecord(
        callback_url="http://engine/tasks/1", created=time.time() - 600, progress=False
    )
    record.stage_ms = {"fetch": 5.0, "process": 1.0, "upload": 2.0, "notify": 1.0}
    log = logging.getLogger("tests.summary")

    with caplog.at_level(logging.INFO, logger="tests.summary"):
        record.end("finished", "", log)

    [line] = caplog.records
    summary = line.__dict__["summary"]
    assert summary["run_ms"] < 60_000
    assert summary["since_handoff_ms"] >= 600_000
    message = line.getMessage()
    assert message.startswith(f"summary: finished in {summary['run_ms']:.0f} ms (fetch 5 ms, ")
    assert f"{summary['since_handoff_ms']:.0f} ms after the hand-off to Prefect" in message


def test_an_undelivered_outcome_is_counted_as_such_and_not_yet_as_an_end() -> None:
    """A run whose final callback the engine did not take counts as undelivered, not as
    finished or errored: the execution that delivers it counts the end."""

    def sample(name: str) -> float:
        return REGISTRY.get_sample_value(name) or 0.0

    def task_ends() -> float:
        finished = sample("core_service_tasks_finished_total")
        errored = sum(
            s.value
            for metric in REGISTRY.collect()
            if metric.name == "core_service_tasks_errored"
            for s in metric.samples
            if s.name.endswith("_total")
        )
        return finished + errored

    undelivered, ends = sample("core_service_outcomes_undelivered_total"), task_ends()
    record = RunRecord(callback_url="http://engine/tasks/1", created=time.time(), progress=False)

    record.end(UNDELIVERED_OUTCOME, "engine unreachable", logging.getLogger("tests.summary"))

    assert sample("core_service_outcomes_undelivered_total") == undelivered + 1
    assert task_ends() == ends
