"""Every private piece of Prefect this project replaces or relies on is still where, and
as, it expects: a Prefect upgrade that moves one fails here, naming the patch, rather
than silently undoing what the patch buys (each module says what that is)."""

from __future__ import annotations

import inspect
import logging
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import prefect.flow_engine
import prefect.server.api.server
import prefect.task_engine
from dotenv import dotenv_values
from prefect._flow_run_suspension import observe_flow_run_suspension
from prefect.client.orchestration import PrefectClient
from prefect.server.database.configurations import AioSqliteConfiguration
from prefect.states import Completed, Failed

from deployments.prefect_server import _begin_immediate
from flows.engine import (
    COMPLETED_TASK_RUN,
    _not_watched,
    _NotCompletedTaskRuns,
)


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_run_heartbeats_follow_the_setting_the_worker_unsets() -> None:
    """flows.engine.without_run_heartbeats (a setting, not a patch): the flow engine takes
    each run's heartbeat interval from `flows.heartbeat_frequency` as the run starts, and
    starts no heartbeat thread when it is None."""
    interval = inspect.getsource(prefect.flow_engine.BaseFlowRunEngine.heartbeat_seconds.fget)  # type: ignore[attr-defined]
    assert "get_current_settings().flows.heartbeat_frequency" in interval
    send = inspect.getsource(prefect.flow_engine._send_heartbeats)
    assert re.search(r"if heartbeat_seconds is None:\s*yield\s*return", send)


def test_suspension_watch_patch_replaces_a_function_of_that_signature() -> None:
    """flows.engine.skip_suspension_watch: `observe_flow_run_suspension` takes
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
    assert not keep(record(logging.INFO, f"Finished in state {Completed(name='Cached')}"))
    assert keep(record(logging.ERROR, f"Finished in state {Failed(message='x')}"))
    assert keep(record(logging.INFO, "Task run failed with exception: ... Retry 1/5"))


def test_prefect_aws_s3_blocks_load_without_the_rest_of_the_package() -> None:
    """flows.aws_blocks: in a fresh interpreter, the three S3 blocks load from their
    modules alone (each module and name where it expects them), work as blocks, and
    leave prefect-aws's ECS worker, Lambda block and Prefect's worker base unloaded."""
    probe = """
import sys
from flows.aws_blocks import s3_blocks
parameters, credentials, bucket = s3_blocks()
import prefect_aws
assert prefect_aws.S3Bucket is bucket and prefect_aws.AwsCredentials is credentials
block = bucket(bucket_name="b", credentials=credentials(aws_access_key_id="k",
    aws_secret_access_key="s", region_name="eu-central-2",
    aws_client_parameters=parameters(endpoint_url="http://127.0.0.1:9")))
assert block.credentials.get_s3_client().meta.endpoint_url == "http://127.0.0.1:9"
unwanted = ["prefect_aws.workers", "prefect_aws.lambda_function", "prefect.workers.base"]
print([name for name in unwanted if name in sys.modules])
"""
    answer = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert answer.returncode == 0, f"flows.aws_blocks no longer loads: {answer.stderr[-2000:]}"
    assert answer.stdout.strip().splitlines()[-1] == "[]"


def test_server_loads_no_collection_with_block_registration_off() -> None:
    """.env's PREFECT_SERVER_REGISTER_BLOCKS_ON_START and ..._MEMOIZE_BLOCK_AUTO_REGISTRATION
    (settings, not patches): the server's start loads the installed collections (prefect-aws
    and boto3, 28 MB) only on the memoized path, and registers blocks only when asked."""
    source = inspect.getsource(prefect.server.api.server._memoize_block_auto_registration)
    skip = source.index("if not PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION.value():")
    assert skip < source.index("load_prefect_collections()")
    lifespan = inspect.getsource(prefect.server.api.server.create_app)
    assert "if not prefect.settings.PREFECT_API_BLOCKS_REGISTER_ON_START:" in lifespan
    settings = dotenv_values(Path(__file__).parents[2] / ".env")
    assert settings["PREFECT_SERVER_REGISTER_BLOCKS_ON_START"] == "false"
    assert settings["PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION"] == "false"
