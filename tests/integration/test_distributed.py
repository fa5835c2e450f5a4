"""The distributed mode: PostgreSQL, a Prefect server on it, two APIs and two workers.

The cluster is its own (its own Prefect server, database, ports and journals), started by
the code of `make run-scaled`; only S3 and the stand-in engine are the suite's. Select it
alone with `pytest -m distributed`.
"""

from __future__ import annotations

import asyncio
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from deployments.local import Stack, environment, free_port
from deployments.scaled import Cluster, s3_results, start_cluster
from flows.reaper import owner_mark
from tests import plain_http
from tests.conftest import NOT_MEASURED, S3_SECRET, WORKDIR
from tests.integration.conftest import (
    Client,
    Engine,
    RunningStack,
    files_holding,
    image_bytes,
    s3_client,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.distributed]

TASKS = 100
# The burst test: rounds of BURST tasks sent into both APIs at once, ROUNDS times. With
# claims from stale listings accepted out of ended states, bursts of 300 ran 15 to 18 of
# 450-600 tasks twice.
BURST = 250
ROUNDS = 4
# POSTs of a burst in flight at once: the whole burst arrives within a moment, as the
# engine's do, so the workers find a deep backlog and list the same runs.
SENDERS = 100
RESULTS_BUCKET = "distributed-results"
WORKERS = ("dist-worker-1", "dist-worker-2")
# Seconds for each thing the cluster does below, on a busy two-core machine; and between
# two looks at Prefect's flow runs (each reads them all).
DEADLINE = 300
POLL = 0.5
# Connections to the Prefect database over the whole burst test: the server's pool of 15,
# again after a connection it dropped, and the test's own.
MAX_SESSIONS = 60
TERMINAL = ("finished", "error")


@pytest.fixture(scope="module")
def cluster(s3_endpoint: str) -> Iterator[Cluster]:
    folder = Path(tempfile.mkdtemp(prefix="distributed-", dir=WORKDIR))
    env = environment(
        {
            # Results where both workers read them, as the distributed mode keeps them.
            **s3_results(s3_endpoint, RESULTS_BUCKET),
            "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
            "PREFECT_HOME": str(folder / "prefect"),
            # A worker takes runs from a listing of due runs for up to a poll interval:
            # Prefect's own default of 10 s makes claims from old listings common.
            "WORKER_POLL_INTERVAL": "10",
            # A burst, and the last runs of the one before still ending.
            "MAX_TASKS": str(2 * BURST),
            # A worker silent for 3 heartbeats (9 s) is taken for dead by the other one.
            "WORKER_HEARTBEAT_SECONDS": "3",
            # Callbacks refused while the engine is down are retried for a minute or more.
            "RETRY_BASE_DELAY": "0.5",
            "CALLBACK_RETRIES": "8",
            # Its processes run the code the suite's own stack covers already: measuring
            # them again would only slow the busiest of the suite's tests.
            **NOT_MEASURED,
        }
    )
    with (WORKDIR / "distributed.log").open("ab") as log:
        stack = Stack(env, log=log)
        try:
            yield start_cluster(
                stack, folder, api_ports=[free_port(), free_port()], workers=WORKERS
            )
        finally:
            stack.stop()


def cluster_client(cluster: Cluster, engine: Engine, s3_endpoint: str) -> Client:
    """The suite's engine-side client, posting to the cluster's first API."""
    log_path = WORKDIR / "distributed.log"
    stack = RunningStack(cluster.stack, cluster.apis[0], cluster.prefect_api, log_path)
    return Client(stack, engine, s3_endpoint)


def flow_runs(cluster: Cluster, task_ids: list[str]) -> list[dict[str, Any]]:
    """The flow runs of these tasks (at most 200, Prefect's page)."""
    query = {"flow_runs": {"name": {"any_": task_ids}}, "limit": len(task_ids)}
    response = plain_http.post(f"{cluster.prefect_api}/flow_runs/filter", json=query, timeout=30)
    response.raise_for_status()
    runs: list[dict[str, Any]] = response.json()
    return runs


def runs_not_ended(cluster: Cluster) -> list[tuple[str, str]]:
    """The cluster's flow runs still scheduled, pending or running (up to 20): the name
    and state name of each."""
    states = ["SCHEDULED", "PENDING", "RUNNING"]
    query = {"flow_runs": {"state": {"type": {"any_": states}}}, "limit": 20}
    response = plain_http.post(f"{cluster.prefect_api}/flow_runs/filter", json=query, timeout=30)
    response.raise_for_status()
    return [(run["name"], run["state_name"]) for run in response.json()]


# 1,000 tasks take 3 to 5 minutes on a busy two-core machine, more than the suite's 300 s.
@pytest.mark.timeout(1200)
def test_1000_tasks_in_bursts_into_both_apis_each_get_exactly_one_terminal_callback(
    cluster: Cluster, engine: Engine, s3_endpoint: str
) -> None:
    """Bursts of tasks sent into both APIs at once, with no fault: both workers list and
    claim the same runs, and no run is executed twice: every task gets exactly one
    terminal callback, `finished`, once Prefect has no run left to execute."""
    assert all(worker.alive() for worker in cluster.workers.values())
    client = cluster_client(cluster, engine, s3_endpoint)
    keys = [client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")]
    task_ids: list[str] = []
    with ThreadPoolExecutor(SENDERS) as pool:
        for _ in range(ROUNDS):
            bodies = [client.body(keys) for _ in range(BURST)]
            burst = [body["task"]["id"] for body in bodies]
            for task_id in burst:
                engine.accept(task_id)

            def submit(numbered: tuple[int, dict[str, Any]]) -> int:
                n, body = numbered
                api = cluster.apis[n % len(cluster.apis)]
                return plain_http.post(f"{api}/compute", json=body, timeout=10).status_code

            assert list(pool.map(submit, enumerate(bodies))) == [200] * BURST
            for task_id in burst:
                engine.final(task_id, timeout=DEADLINE)
            task_ids += burst
    deadline = time.monotonic() + DEADLINE
    while (left := runs_not_ended(cluster)) and time.monotonic() < deadline:
        time.sleep(POLL)
    assert not left, f"runs not ended after {DEADLINE} s: {left}"
    twice = {
        task_id: [u["status"] for u in engine.updates[task_id]]
        for task_id in task_ids
        if [u["status"] for u in engine.updates[task_id]] != ["finished"]
    }
    assert len(task_ids) >= 1000
    assert not twice, f"{len(twice)} of {len(task_ids)} tasks: {list(twice.items())[:5]}"
    # The Prefect server kept its connections to PostgreSQL open (deployments.scaled.
    # POSTGRES_POOL): with Prefect's own pool it opened about 880 in this test.
    assert (opened := sessions_opened(cluster)) <= MAX_SESSIONS, opened
    # The workers kept their results in the S3 both reach (flows.results).
    kept = s3_client(s3_endpoint).list_objects_v2(Bucket=RESULTS_BUCKET, Prefix="kept/")
    names = [item["Key"] for item in kept.get("Contents", [])]
    assert any(name.startswith("kept/notify-") for name in names), names[:5]


def sessions_opened(cluster: Cluster) -> int:
    """Connections PostgreSQL has accepted to the Prefect database since it started."""

    async def read() -> int:
        url = cluster.database_url.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(url)
        try:
            query = "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            sessions: int = await connection.fetchval(query)
            return sessions
        finally:
            await connection.close()

    return asyncio.run(read())


def held_by(runs: list[dict[str, Any]], worker: str, states: set[str]) -> list[dict[str, Any]]:
    return [
        run
        for run in runs
        if run["infrastructure_pid"] == owner_mark(worker) and run["state_type"] in states
    ]


def rescheduled(cluster: Cluster, run_id: str, worker: str) -> bool:
    """Whether a reaper gave the run to the pool again because `worker` stopped answering."""
    response = plain_http.get(
        f"{cluster.prefect_api}/flow_run_states/", params={"flow_run_id": run_id}, timeout=30
    )
    response.raise_for_status()
    return any(
        state["name"] == "AwaitingRetry" and f"({worker}) stopped answering" in state["message"]
        for state in response.json()
    )


def test_two_apis_and_two_workers_share_100_tasks_and_a_killed_worker_loses_none(
    cluster: Cluster, engine: Engine, s3_endpoint: str
) -> None:
    """100 tasks sent across both APIs run on both workers; one worker is killed while it
    holds runs (the engine refusing callbacks meanwhile, so none of them had delivered its
    result), the other runs them again, and every task ends with one `finished` callback."""
    client = cluster_client(cluster, engine, s3_endpoint)
    keys = [client.put(image_bytes("PNG"), ".png"), client.put(b"90", ".txt")]
    engine_down = threading.Event()
    bodies = [client.body(keys) for _ in range(TASKS)]
    task_ids = [body["task"]["id"] for body in bodies]
    for task_id in task_ids:
        engine.answer_by(task_id, lambda: 503 if engine_down.is_set() else 200)
    api_of = {task_id: cluster.apis[n % 2] for n, task_id in enumerate(task_ids)}

    def submit(body: dict[str, Any]) -> int:
        api = api_of[body["task"]["id"]]
        return plain_http.post(f"{api}/compute", json=body, timeout=10).status_code

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(submit, bodies)) == [200] * TASKS

    victim, survivor = WORKERS

    def both_working() -> list[dict[str, Any]] | None:
        """Every run, once both workers have completed some and the victim holds some."""
        runs = flow_runs(cluster, task_ids)
        done_by_both = all(held_by(runs, name, {"COMPLETED"}) for name in WORKERS)
        return runs if done_by_both and held_by(runs, victim, {"PENDING", "RUNNING"}) else None

    before_kill = wait_for(both_working, DEADLINE, "both workers to complete runs", POLL)
    completed_by = {name: len(held_by(before_kill, name, {"COMPLETED"})) for name in WORKERS}

    engine_down.set()

    def stuck_in_notify() -> list[dict[str, Any]]:
        """The victim's runs whose callback the engine refused: they retry it for a
        minute or more, so they are still running when the victim is killed."""
        refused = {
            task_id
            for task_id in task_ids
            if len(engine.updates.get(task_id, [])) > len(engine.delivered.get(task_id, []))
        }
        return [
            run
            for run in held_by(flow_runs(cluster, task_ids), victim, {"RUNNING"})
            if run["name"] in refused
        ]

    wait_for(stuck_in_notify, DEADLINE, "a run of the victim retrying its callback", POLL)
    cluster.workers[victim].popen.send_signal(signal.SIGKILL)
    cluster.workers[victim].popen.wait(30)
    held = held_by(flow_runs(cluster, task_ids), victim, {"PENDING", "RUNNING"})
    orphans = {run["id"] for run in held}
    started = {run["id"] for run in held if run["state_type"] == "RUNNING"}
    assert started, "the killed worker was running no run"
    wait_for(
        lambda: not held_by(flow_runs(cluster, task_ids), victim, {"PENDING", "RUNNING"}),
        DEADLINE,
        "the survivor to reschedule the killed worker's runs",
        POLL,
    )
    engine_down.clear()

    for task_id in task_ids:
        engine.final(task_id, timeout=DEADLINE)
    wait_for(
        lambda: all(run["state_type"] == "COMPLETED" for run in flow_runs(cluster, task_ids)),
        DEADLINE,
        "every flow run to end completed",
        POLL,
    )
    runs = {run["name"]: run for run in flow_runs(cluster, task_ids)}
    assert sorted(runs) == sorted(task_ids)
    for task_id in task_ids:
        ends = [u["status"] for u in engine.delivered[task_id] if u["status"] in TERMINAL]
        assert ends == ["finished"], (task_id, engine.updates[task_id])
    assert all(completed_by.values()), completed_by
    # A run whose last request (Completed) was on the wire at the kill ends as the victim
    # left it; every other run it held is given to the pool again and run by the survivor.
    rerun = {run_id for run_id in orphans if rescheduled(cluster, run_id, victim)}
    by_id = {run["id"]: run for run in runs.values()}
    assert all(
        by_id[run_id]["infrastructure_pid"] == owner_mark(victim) for run_id in orphans - rerun
    )
    assert {by_id[run_id]["infrastructure_pid"] for run_id in rerun} == {owner_mark(survivor)}
    assert rerun & started, "no run the killed worker had started was run again"
    assert all(by_id[run_id]["run_count"] >= 2 for run_id in rerun & started)
    # A task's status is Prefect's, whichever API is asked.
    for task_id in task_ids[:4]:
        for api in cluster.apis:
            status = plain_http.get(f"{api}/tasks/{task_id}/status", timeout=10).json()
            assert status == {"status": "finished"}, (api, task_id, status)


def test_secret_absent_from_the_clusters_files(cluster: Cluster) -> None:
    """After the tasks above, the S3 secret is in none of the files the cluster wrote: its
    PostgreSQL database, its intake journals and its processes' log. (test_secrets.py scans
    the suite's own stack; this module's cluster runs in an xdist worker of its own.)"""
    assert any(path.parent.name == "pg_wal" for path in cluster.folder.rglob("*"))
    assert (WORKDIR / "distributed.log").is_file()
    # The cluster's folder and its log are both in the suite's folder.
    leaked = files_holding(S3_SECRET.encode(), WORKDIR)
    assert not leaked, f"the S3 secret found in {leaked}"
