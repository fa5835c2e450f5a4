"""core.logs: JSON lines in production, readable lines elsewhere, levels per logger."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from core.logs import (
    OWN_LOGGERS,
    JsonFormatter,
    RunIds,
    TextFormatter,
    bound,
    configure_logging,
    wants_json,
)
from core.sealing import new_key
from core.settings import CommonSettings

NOISY = ("httpx", "httpcore", "botocore", "boto3", "urllib3", "websockets")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Put the root handlers and every touched logger's level back after the test."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    levels = {name: logging.getLogger(name).level for name in ("", *OWN_LOGGERS, *NOISY)}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def settings(environment: str, log_level: str, log_format: str = "auto") -> CommonSettings:
    return CommonSettings.model_validate(
        {
            "sealing_key": SecretStr(new_key()),
            "environment": environment,
            "log_level": log_level,
            "log_format": log_format,
        }
    )


def record(
    message: str, *args: object, extra: dict[str, Any] | None = None, exc: bool = False
) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    made = logging.getLogger("flows.test").makeRecord(
        "flows.test", logging.INFO, __file__, 1, message, args, exc_info, extra=extra
    )
    return made


def test_json_formatter_emits_one_object_with_the_extras() -> None:
    """A record becomes one JSON object carrying time, level, logger, event and extras."""
    line = JsonFormatter().format(record("task %s accepted", "abc", extra={"task_id": "abc"}))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["logger"] == "flows.test"
    assert entry["event"] == "task abc accepted"
    assert entry["task_id"] == "abc"
    assert entry["time"].endswith("+00:00")
    assert set(entry) == {"time", "level", "logger", "event", "task_id"}


def test_json_formatter_keeps_multiline_messages_and_tracebacks_on_one_line() -> None:
    """Newlines in the message and an exception's traceback stay inside one JSON line."""
    line = JsonFormatter().format(record("first\nsecond", exc=True))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["event"] == "first\nsecond"
    assert "RuntimeError: boom" in entry["exception"]


def test_json_formatter_serialises_non_json_extras_as_strings() -> None:
    """Extras that JSON cannot hold (a set, an object) are written with str()."""
    entry = json.loads(JsonFormatter().format(record("x", extra={"odd": {1}})))
    assert entry["odd"] == "{1}"


def test_text_formatter_appends_the_extras() -> None:
    """The text line ends with key=value for each extra."""
    formatter = TextFormatter("%(levelname)s %(name)s %(message)s")
    line = formatter.format(record("accepted", extra={"task_id": "abc", "stage": "fetch"}))
    assert line == "INFO flows.test accepted task_id=abc stage=fetch"


def test_text_formatter_without_extras_is_the_plain_line() -> None:
    """Without extras nothing is appended."""
    formatter = TextFormatter("%(levelname)s %(message)s")
    assert formatter.format(record("plain")) == "INFO plain"


def test_text_formatter_leaves_out_uvicorn_color_message() -> None:
    """uvicorn's color_message duplicates the message and is not appended."""
    formatter = TextFormatter("%(message)s")
    assert formatter.format(record("hello", extra={"color_message": "hello"})) == "hello"


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_in_production_uses_one_json_handler() -> None:
    """In production the root logger has exactly one handler, with the JSON formatter."""
    configure_logging(settings("production", "info"))
    handlers = logging.getLogger().handlers
    assert len(handlers) == 1
    assert isinstance(handlers[0], logging.StreamHandler)
    assert isinstance(handlers[0].formatter, JsonFormatter)


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize("environment", ["development", "test"])
def test_configure_logging_elsewhere_uses_text(environment: str) -> None:
    """Outside production the one root handler formats text."""
    configure_logging(settings(environment, "info"))
    handlers = logging.getLogger().handlers
    assert len(handlers) == 1
    assert isinstance(handlers[0].formatter, TextFormatter)


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_twice_keeps_one_handler() -> None:
    """Configuring again replaces the handler instead of adding a second."""
    configure_logging(settings("development", "info"))
    configure_logging(settings("production", "info"))
    assert len(logging.getLogger().handlers) == 1


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("log_level", "own", "root"),
    [
        ("debug", logging.DEBUG, logging.INFO),
        ("info", logging.INFO, logging.INFO),
        ("warning", logging.WARNING, logging.WARNING),
        ("error", logging.ERROR, logging.ERROR),
        ("critical", logging.CRITICAL, logging.CRITICAL),
    ],
)
def test_configure_logging_sets_levels(log_level: str, own: int, root: int) -> None:
    """Own loggers take LOG_LEVEL, the root at most INFO, noisy libraries WARNING."""
    configure_logging(settings("development", log_level))
    assert logging.getLogger().level == root
    for name in OWN_LOGGERS:
        assert logging.getLogger(name).level == own
    for name in NOISY:
        assert logging.getLogger(name).level == logging.WARNING


class Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize(
    ("log_format", "environment", "tty", "json_lines"),
    [
        ("auto", "production", False, True),
        ("auto", "production", True, False),
        ("auto", "development", False, False),
        ("auto", "test", False, False),
        ("json", "development", True, True),
        ("text", "production", False, False),
    ],
)
def test_log_format_chooses_json_or_text(
    log_format: str, environment: str, tty: bool, json_lines: bool
) -> None:
    """json and text are obeyed; auto is JSON in production unless on a terminal."""
    assert wants_json(settings(environment, "info", log_format), Stream(tty)) is json_lines


def test_bound_ids_reach_every_record_inside_and_leave_after() -> None:
    """Inside `bound`, records get the ids; nested binds add to them; after, none."""
    ids = RunIds()
    with bound(task_id="t1"):
        with bound(flow_run_id="r1"):
            inside = record("x")
            ids.filter(inside)
        only_task = record("y")
        ids.filter(only_task)
    after = record("z")
    ids.filter(after)
    assert (inside.__dict__["task_id"], inside.__dict__["flow_run_id"]) == ("t1", "r1")
    assert only_task.__dict__["task_id"] == "t1"
    assert "flow_run_id" not in only_task.__dict__
    assert "task_id" not in after.__dict__


def test_ids_given_with_the_record_win() -> None:
    """An id passed in `extra` is kept over the bound one."""
    made = record("x", extra={"task_id": "given"})
    with bound(task_id="bound"):
        RunIds().filter(made)
    assert made.__dict__["task_id"] == "given"


def test_run_logger_lines_get_the_task_id_from_the_run_name() -> None:
    """Prefect's run logger names the run, which is named after the task id."""
    made = record("fetch: started", extra={"flow_run_name": "t9", "flow_run_id": "r9"})
    RunIds().filter(made)
    assert (made.__dict__["task_id"], made.__dict__["flow_run_id"]) == ("t9", "r9")


def test_text_lines_leave_out_what_the_message_spells_out() -> None:
    """A summary's structured fields go in JSON lines only; text shows the message."""
    made = record("summary: finished", extra={"summary": {"outcome": "finished"}, "task_id": "t"})
    assert TextFormatter("%(message)s").format(made) == "summary: finished task_id=t"
    assert json.loads(JsonFormatter().format(made))["summary"] == {"outcome": "finished"}


@pytest.mark.usefixtures("restore_logging")
def test_configured_handler_adds_the_ids() -> None:
    """The root handler configured for the process carries the RunIds filter."""
    configure_logging(settings("development", "info"))
    [handler] = logging.getLogger().handlers
    assert any(isinstance(f, RunIds) for f in handler.filters)
