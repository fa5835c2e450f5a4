"""flows.errors: task errors keep their class and message across process boundaries."""

from __future__ import annotations

import pickle

import pytest

from flows.errors import PermanentError, TaskError, TransientError


@pytest.mark.parametrize("error_class", [TaskError, PermanentError, TransientError])
def test_pickle_round_trip_keeps_class_and_message(error_class: type[TaskError]) -> None:
    """pickle.loads(pickle.dumps(e)) has e's exact class, str and .message."""
    message = "input 'image': type text/plain is not one of image/png, image/jpeg"
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        restored = pickle.loads(pickle.dumps(error_class(message), protocol=protocol))
        assert type(restored) is error_class
        assert str(restored) == message
        assert restored.message == message
        assert restored.args == (message,)


def test_hierarchy() -> None:
    """Permanent and transient errors are both TaskErrors, and distinct."""
    assert issubclass(PermanentError, TaskError)
    assert issubclass(TransientError, TaskError)
    assert not issubclass(PermanentError, TransientError)
    assert not issubclass(TransientError, PermanentError)


def test_str_is_the_message() -> None:
    """str(error) is exactly the message the engine receives."""
    assert str(PermanentError("bucket 'engine' does not exist")) == (
        "bucket 'engine' does not exist"
    )
