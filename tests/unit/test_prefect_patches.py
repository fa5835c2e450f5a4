"""Every private piece of Prefect this project replaces or relies on is still where, and
as, it expects: a Prefect upgrade that moves one fails here, naming the patch, rather
than silently undoing what the patch buys (each module says what that is)."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from typing import Any

import prefect.flow_engine
import prefect.task_engine
from prefect._flow_run_suspension import observe_flow_run_suspension
from prefect.client.orchestration import PrefectClient
from prefect.server.database.configurations import AioSqliteConfiguration
from prefect.states import Completed, Failed

from deployments.prefect_server import _begin_immediate
from flows.engine import (
    COMPLETED_TASK_RUN,
    _no_heartbeats,
    _not_watched,
    _NotCompletedTaskRuns,
)


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_heartbeat_thread_patch_replaces_a_function_of_that_signature() -> None:
    """flows.engine.skip_per_run_threads: `prefect.flow_engine._send_heartbeats`, looked
    up in its module at each run, takes (engine, join_on_exit). Read from the source, as
    another test of the session may have patched the module already."""
    source = inspect.getsource(prefect.flow_engine)
    assert re.search(r"\ndef _send_heartbeats\(\s*engine\b.*\n\s*join_on_exit\b", source)
    assert parameters(_no_heartbeats) == ["engine", "join_on_exit"]
    run_context = inspect.getsource(prefect.flow_engine.AsyncFlowRunEngine.run_context)
    assert "_send_heartbeats(" in run_context, "the flow engine no longer calls _send_heartbeats"


def test_suspension_watch_patch_replaces_a_function_of_that_signature() -> None:
    """flows.engine.skip_per_run_threads: `observe_flow_run_suspension` takes
    (flow_run_id, suspension_request, polling_interval), and the flow engine looks it up
    in its own module's namespace as it starts a run."""
    expected = ["flow_run_id", "suspension_request", "polling_interval"]
    assert parameters(observe_flow_run_suspension) == parameters(_not_watched) == expected
    engine = prefect.flow_engine.BaseFlowRunEngine
    assert "observe_flow_run_suspension(" in inspect.getsource(
        engine.setup_flow_run_suspension_request
    )
    assert "from prefect._flow_run_suspension import" in inspect.getsource(prefect.flow_engine)


def test_client_method_patches_wrap_methods_of_that_signature() -> None:
    """flows.engine.record_owners and ClaimedRuns: the client's `update_flow_run` takes the
    run's id and keyword fields (infrastructure_pid among them), `read_flow_run` the id."""
    update = parameters(PrefectClient.update_flow_run)
    assert update[:2] == ["self", "flow_run_id"]
    assert "infrastructure_pid" in update
    assert parameters(PrefectClient.read_flow_run) == ["self", "flow_run_id"]


def test_sqlite_immediate_patch_replaces_a_method_of_that_signature() -> None:
    """deployments.prefect_server.begin_writes_immediately: Prefect's SQLite configuration
    begins transactions in `begin_transaction(session, with_for_update)`."""
    assert parameters(AioSqliteConfiguration.begin_transaction) == parameters(_begin_immediate)
    assert parameters(_begin_immediate) == ["self", "session", "with_for_update"]


def test_task_engine_takes_the_context_client_with_no_httpx_settings() -> None:
    """flows.engine.shared_clients: the task engine reuses the client of the surrounding
    context when it asks `get_client()` for one with no `httpx_settings`, so the shared
    client must have none either (a task run otherwise builds clients of its own)."""
    source = inspect.getsource(prefect.task_engine.AsyncTaskRunEngine.initialize_run)
    assert "self._client = get_client()" in source


def test_completed_task_run_filter_matches_prefects_line() -> None:
    """flows.engine.quiet_completed_task_runs: the task engine logs `Finished in state
    <state>` at INFO for a completed run, at ERROR otherwise."""
    source = inspect.getsource(prefect.task_engine.BaseTaskRunEngine.log_finished_message)
    assert 'msg = f"Finished in state {display_state}"' in source
    assert "logging.INFO if self.state.is_completed() else logging.ERROR" in source
    assert f"Finished in state {Completed()}".startswith(COMPLETED_TASK_RUN)


def test_completed_task_run_filter_keeps_failures() -> None:
    """The filter drops a completed run's line and keeps a failed one's."""

    def record(level: int, message: str) -> logging.LogRecord:
        return logging.LogRecord("prefect.task_runs", level, __file__, 1, message, None, None)

    keep = _NotCompletedTaskRuns().filter
    assert not keep(record(logging.INFO, f"Finished in state {Completed()}"))
    assert keep(record(logging.ERROR, f"Finished in state {Failed(message='x')}"))
    assert keep(record(logging.INFO, "Task run failed with exception: ... Retry 1/5"))
