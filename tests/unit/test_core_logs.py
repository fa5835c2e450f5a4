"""core.logs: JSON lines in production, readable lines elsewhere, levels per logger."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from core.logs import OWN_LOGGERS, JsonFormatter, TextFormatter, configure_logging
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


def settings(environment: str, log_level: str) -> CommonSettings:
    return CommonSettings.model_validate(
        {
            "sealing_key": SecretStr(new_key()),
            "environment": environment,
            "log_level": log_level,
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
