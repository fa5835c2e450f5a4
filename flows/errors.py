"""Why a task could not be done.

    TaskError              ends the task with an `error` callback carrying `str(error)`
    ├── PermanentError     retrying cannot help: a missing key, a wrong type, a 4xx
    └── TransientError     may pass: a timeout, a 5xx, a refused connection; retried
                           with exponential backoff and jitter

Messages are written for the person reading the callback or the Prefect UI: they name
the input, key or host at fault, and never carry a credential.
"""

from __future__ import annotations


class TaskError(Exception):
    """Base class; `str(error)` is the message the engine receives."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[type[TaskError], tuple[str]]:
        return (type(self), (self.message,))


class PermanentError(TaskError):
    """Retrying will not help."""


class TransientError(TaskError):
    """Retrying may help."""
