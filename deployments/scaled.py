"""`make run-scaled`: the distributed mode, on one machine.

    .venv/bin/python -m deployments.scaled [--apis 2] [--workers 2]

What Compose and Kubernetes run (see docs/scaling.md), as processes: a
throwaway PostgreSQL, a Prefect server on it, several APIs and several workers, all
sharing the work through Prefect. The same code and settings as `make run`
(`deployments.local`); what differs is the database, each API's port (SERVICE_PORT,
then the next ones) and intake journal, and each worker's name. Ctrl-C stops everything
and the database is thrown away. The distributed test and `make bench-scale` start their
clusters with `start_cluster`.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from deployments.local import (
    Process,
    Stack,
    StartError,
    api_url,
    deployment_registered,
    environment,
    prefect_headers,
    prefect_ui,
    s3_line,
    start_api,
    start_local_s3,
    start_prefect_server,
    supervise,
)
from deployments.postgres import start_postgres
from services.base import load_service

# Seconds the Prefect server may take to start: on a new database it first creates its
# tables, which takes a while on a busy machine.
SERVER_START = 180.0
# The Prefect server's connections to PostgreSQL: 15 kept open. Prefect's own keeps 5 and
# opens up to 10 more for each use, closing them after: a burst of 1,000 tasks opened
# about 880 (each a new backend process), with the same ceiling. (In the server's
# environment only: Prefect 3.9.1 fails to start when a `.env` file it reads names them.)
POSTGRES_POOL = {
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "15",
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": "0",
}


@dataclass
class Cluster:
    """A running distributed stack; every process is stopped with `stack`."""

    stack: Stack
    folder: Path
    slug: str
    database_url: str
    prefect_api: str
    apis: list[str] = field(default_factory=list)
    # The workers by WORKER_NAME, in order of start.
    workers: dict[str, Process] = field(default_factory=dict)

    def add_api(self, port: int, timeout: float = 60.0) -> str:
        """Another API, on `port`, with its own intake journal; its URL."""
        api = self.stack.variant(
            SERVICE_PORT=str(port), INTAKE_PATH=str(self.folder / f"intake-{port}.db")
        )
        start_api(api, timeout)
        self.apis.append(api_url(api.env))
        return self.apis[-1]

    def add_worker(
        self, name: str, timeout: float = 60.0, metrics_port: int | None = None
    ) -> Process:
        """Another worker, named `name` (serving its metrics on `metrics_port`, if given);
        ready once it heartbeats to its work pool."""
        overrides = {"WORKER_NAME": name}
        if metrics_port is not None:
            overrides["WORKER_METRICS_PORT"] = str(metrics_port)
        worker = self.stack.variant(**overrides)
        pool = worker.env.get("WORK_POOL") or self.slug
        registered = deployment_registered(worker.env, self.slug)
        listed = worker_listed(worker.env, pool, name)
        args = [sys.executable, "-m", "flows"]
        process = worker.start(f"worker {name}", args, lambda: registered() and listed(), timeout)
        self.workers[name] = process
        return process


def worker_listed(env: Mapping[str, str], pool: str, name: str) -> Callable[[], bool]:
    """A check: has the worker `name` heartbeated to `pool` (as the Prefect UI lists it)?"""
    url = f"{env['PREFECT_API_URL'].rstrip('/')}/work_pools/{pool}/workers/filter"

    def listed() -> bool:
        headers = {"Content-Type": "application/json", **prefect_headers(env)}
        request = urllib.request.Request(url, data=b"{}", headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return any(worker.get("name") == name for worker in json.load(response))
        except (urllib.error.URLError, OSError, ValueError):
            return False

    return listed


def start_cluster(
    stack: Stack,
    folder: Path,
    *,
    api_ports: Sequence[int],
    workers: Sequence[str],
    worker_metrics_ports: Sequence[int] = (),
) -> Cluster:
    """PostgreSQL (its files in `folder`/postgres), a Prefect server on it at
    PREFECT_API_URL, then the named workers (the n-th serving its metrics on the n-th of
    `worker_metrics_ports`, when given) and an API on each port."""
    slug = load_service(stack.env.get("SERVICE_MODULE", "services.image_rotate")).description.slug
    _, database_url = start_postgres(stack, folder / "postgres")
    server = stack.variant(PREFECT_API_DATABASE_CONNECTION_URL=database_url, **POSTGRES_POOL)
    if start_prefect_server(server, SERVER_START) is None:
        raise StartError(
            f"a Prefect server already answers at {stack.env['PREFECT_API_URL']}: "
            "the distributed mode starts its own, on PostgreSQL"
        )
    cluster = Cluster(stack, folder, slug, database_url, stack.env["PREFECT_API_URL"])
    for n, name in enumerate(workers):
        cluster.add_worker(
            name, metrics_port=worker_metrics_ports[n] if worker_metrics_ports else None
        )
    for port in api_ports:
        cluster.add_api(port)
    return cluster


def s3_results(s3_url: str, bucket: str = "service-results") -> dict[str, str]:
    """The settings that keep the workers' results in a bucket of `s3_url` (a development
    S3: its keys are moto's, which takes any)."""
    return {
        "RESULT_STORAGE": f"s3://{bucket}/kept",
        "RESULT_S3_ENDPOINT": s3_url,
        "AWS_ACCESS_KEY_ID": "results-development-key",
        "AWS_SECRET_ACCESS_KEY": "results-development-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def worker_metrics_ports(
    env: Mapping[str, str], api_ports: Sequence[int], workers: int
) -> list[int]:
    """A metrics port for each worker: two processes cannot serve on one. From
    WORKER_METRICS_PORT on, but after the APIs' ports; none when it is 0 (metrics off)."""
    metrics = int(env.get("WORKER_METRICS_PORT", "0"))
    if not metrics:
        return []
    start_at = max(metrics, max(api_ports, default=0) + 1)
    return [start_at + n for n in range(workers)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deployments.scaled", description=__doc__)
    parser.add_argument("--apis", type=int, default=2, help="API processes (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args(argv)
    if args.apis < 1 or args.workers < 1:
        parser.error("--apis and --workers must be at least 1")
    env = environment()
    stack = Stack(env)
    host = socket.gethostname()
    with tempfile.TemporaryDirectory(prefix="prefect-scaled-") as folder:

        def start() -> str:
            first = int(env.get("SERVICE_PORT", "9090"))
            api_ports = [first + n for n in range(args.apis)]
            metrics_ports = worker_metrics_ports(env, api_ports, args.workers)
            # For trying it with `python -m client`, as `make run` does (development only).
            s3 = start_local_s3(stack)
            # The workers keep their results where each reads the others': that S3.
            results = stack.variant(**s3_results(s3)) if s3 else stack
            cluster = start_cluster(
                results,
                Path(folder),
                api_ports=api_ports,
                workers=[f"{host}-worker-{n}" for n in range(1, args.workers + 1)],
                worker_metrics_ports=metrics_ports,
            )
            host_of = env.get("WORKER_METRICS_HOST", "127.0.0.1")
            docs = "".join(f"  API docs   {url}/docs\n" for url in cluster.apis)
            scraped = "".join(f"  Metrics    {url}/metrics\n" for url in cluster.apis) + "".join(
                f"  Metrics    http://{host_of}:{port}/metrics\n" for port in metrics_ports
            )
            return (
                f"{docs}  Prefect UI {prefect_ui(env)}\n"
                f"  Database   {cluster.database_url}\n"
                f"  Workers    {', '.join(cluster.workers)}\n{scraped}{s3_line(s3)}"
            )

        return supervise(stack, start)


if __name__ == "__main__":
    sys.exit(main())
