"""Task runs as Prefect's API returns them, for the tests of what the API reads from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prefect.client.schemas.objects import State, TaskRun

START = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def task_run(
    name: str,
    state: State,
    started: float,
    ended: float | None = None,
    run_count: int = 1,
    execution: int = 1,
) -> TaskRun:
    """A task run started and ended `started`/`ended` s after START, in the flow run's
    `execution`-th execution."""
    return TaskRun(
        name=name,
        task_key=name,
        dynamic_key="0",
        flow_run_run_count=execution,
        run_count=run_count,
        state=state,
        state_type=state.type,
        state_name=state.name,
        start_time=START + timedelta(seconds=started),
        end_time=START + timedelta(seconds=ended) if ended is not None else None,
    )
