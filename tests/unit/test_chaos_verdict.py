"""The chaos run's verdict on tasks whose terminal callback came twice."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from chaos.engine import Engine
from chaos.stream import Submission
from chaos.verdict import LOST_ANSWER, deliveries, judge
from flows.stages import DELIVERED

ERROR = {"status": "error", "error_message": "S3 unreachable"}


@pytest.fixture
def engine() -> Iterator[Engine]:
    stand_in = Engine()
    try:
        yield stand_in
    finally:
        stand_in.close()


def twice(engine: Engine) -> tuple[Submission, float]:
    """A task whose `error` the engine took twice, and when it took the first."""
    submission = Submission(task_id="t1", sent=0.0, status=200)
    engine.record("t1", ERROR, 200)
    first = engine.terminal("t1")[0].at
    engine.record("t1", ERROR, 200)
    return submission, first


def test_a_second_callback_after_the_answer_to_the_first_was_cut_is_reported_apart(
    engine: Engine,
) -> None:
    """The engine's gate cut its connections just after it took the first: at least once,
    reported apart, not a failure."""
    submission, first = twice(engine)
    verdict = judge([submission], engine, s3=None, prefect_api="", cuts=[first + 0.01])
    assert verdict.failures == []
    assert verdict.answers_lost == ["t1"]


@pytest.mark.parametrize("cut_after", [None, -1.0, LOST_ANSWER + 1.0])
def test_any_other_second_callback_fails(engine: Engine, cut_after: float | None) -> None:
    """No cut, or one that came before the first callback or long after it: a failure,
    which says when the engine took each, from the start of the stream."""
    submission, first = twice(engine)
    cuts = [] if cut_after is None else [first + cut_after]
    start = first - 10.0
    verdict = judge([submission], engine, s3=None, prefect_api="", cuts=cuts, start=start)
    second = engine.terminal("t1")[1].at - start
    assert verdict.failures == [
        f"task t1: 2 terminal callbacks (agreeing), taken at 10.0 s, {second:.1f} s"
    ]
    assert verdict.answers_lost == []


def test_a_second_callback_after_a_first_the_service_never_heard_answered_is_reported_apart(
    engine: Engine,
) -> None:
    """The worker waiting for the first answer was killed: the service logged one
    delivery, the engine took two. At least once, reported apart, not a failure."""
    submission, _ = twice(engine)
    verdict = judge([submission], engine, s3=None, prefect_api="", delivered=Counter(t1=1))
    assert verdict.failures == []
    assert verdict.answers_lost == ["t1"]


def test_a_second_callback_after_a_first_the_service_knew_delivered_fails(
    engine: Engine,
) -> None:
    submission, _ = twice(engine)
    verdict = judge([submission], engine, s3=None, prefect_api="", delivered=Counter(t1=2))
    assert len(verdict.failures) == 1
    assert verdict.answers_lost == []


def test_deliveries_are_counted_from_the_service_log_by_task(tmp_path: Path) -> None:
    task = "2b5fb992-fdcd-4de1-8a99-d3df8e2ff4ac"
    other = "b98ccbdb-adb7-4e8f-92fd-07b6451bd4d7"
    line = f"2026-12-06 21:38:05,500 INFO    flows.stages {DELIVERED}: finished to http://127.0.0.1:9/tasks/"
    log = tmp_path / "service.log"
    log.write_text(
        f"{line}{task}\n"
        f"2026-12-06 21:38:05,600 INFO    api accepted task task_id={other}\n"
        f'{{"message": "{DELIVERED}: error to http://127.0.0.1:9/tasks/{task}"}}\n'
        f"{line}{other}\n"
    )
    assert deliveries(log) == Counter({task: 2, other: 1})
