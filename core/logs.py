"""Logging: readable lines on a terminal, one JSON object per line in production.

Every line logged during a task's life carries its `task_id` and, once Prefect holds its
run, its `flow_run_id`: the API and the worker bind them for the code that handles the
task (`bound`), and lines from Prefect's run logger name the run themselves (the run is
named after the task id). `LOG_FORMAT` chooses the format: `json`, `text`, or `auto`
(JSON in production unless stderr is a terminal, text otherwise).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TextIO

from core.settings import CommonSettings

# Attributes every LogRecord has; anything else was passed in `extra` and is logged too.
# uvicorn's `color_message` only duplicates the message.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
# Extras that the message already spells out for people: JSON lines carry them, text
# lines leave them out.
SPELT_OUT = frozenset({"summary"})


OWN_LOGGERS = ("api", "flows", "core", "services")

_bound: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "log_ids", default=None
)


@contextmanager
def bound(**ids: str) -> Iterator[None]:
    """Add `ids` (task_id, flow_run_id) to every line logged inside, in this context and
    the asyncio tasks it starts."""
    token = _bound.set({**(_bound.get() or {}), **ids})
    try:
        yield
    finally:
        _bound.reset(token)


class RunIds(logging.Filter):
    """Puts the bound ids on each record; a line of Prefect's run logger names its flow
    run, whose name is the task id."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        for key, value in (_bound.get() or {}).items():
            fields.setdefault(key, value)
        run_name = fields.get("flow_run_name")
        if run_name is not None and "task_id" not in fields:
            fields["task_id"] = run_name
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {
            k: v for k, v in record.__dict__.items() if k not in _STANDARD and k not in SPELT_OUT
        }
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return line


def wants_json(settings: CommonSettings, stream: TextIO) -> bool:
    """LOG_FORMAT, with `auto` meaning JSON in production unless `stream` is a terminal."""
    if settings.log_format != "auto":
        return settings.log_format == "json"
    return settings.environment == "production" and not stream.isatty()


def configure_logging(settings: CommonSettings) -> None:
    """Configure the root logger once per process."""
    handler = logging.StreamHandler(sys.stderr)
    if wants_json(settings, sys.stderr):
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)-7s %(name)s %(message)s"))
    handler.addFilter(RunIds())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # LOG_LEVEL governs the project's own loggers; libraries (every poll of Prefect is
    # an HTTP request) speak at INFO at most, and their clients only on trouble.
    level = logging.getLevelName(settings.log_level.upper())
    root.setLevel(max(logging.INFO, level))
    for own in OWN_LOGGERS:
        logging.getLogger(own).setLevel(level)
    for noisy in ("httpx", "httpcore", "botocore", "boto3", "urllib3", "websockets"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
