"""The worker's Prometheus metrics, counted where the work happens.

Each worker process counts the runs it executes and serves them at
`http://WORKER_METRICS_HOST:WORKER_METRICS_PORT/metrics`; a Prometheus scraping every
worker sums them across workers (`sum(rate(core_service_tasks_finished_total[5m]))`).
Counting costs a few hundred nanoseconds per event, all in memory.
"""

from __future__ import annotations

import logging

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

# Seconds, from a fast stage (tens of ms) to a task that waited out a long retry.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

RUNNING = Gauge("core_service_tasks_running", "Tasks this worker is running now")
FINISHED = Counter(
    "core_service_tasks_finished", "Tasks that ended with a `finished` callback delivered"
)
ERRORED = Counter(
    "core_service_tasks_errored",
    "Tasks that ended in error, by the stage that failed and the class of reason",
    ["stage", "reason"],
)
UNDELIVERED = Counter(
    "core_service_outcomes_undelivered",
    "Final callbacks the engine did not take within their retries; delivered again by a "
    "later execution of the run",
)
CALLBACK_ATTEMPTS = Counter(
    "core_service_callback_attempts",
    "PATCH requests to the engine's callback_url, by kind (final or progress)",
    ["kind"],
)
CALLBACK_FAILURES = Counter(
    "core_service_callback_failures",
    "Callback PATCHes the engine did not take (no answer, 4xx, 5xx), by kind",
    ["kind"],
)
PROCESSED = Counter(
    "core_service_processed",
    "Calls of the service's process (a rerun that found the result kept makes none)",
)
STAGE_SECONDS = Histogram(
    "core_service_stage_seconds",
    "Time spent in each stage (fetch, process, upload, notify), retries included",
    ["stage"],
    buckets=BUCKETS,
)
TASK_SECONDS = Histogram(
    "core_service_task_seconds",
    "From the task's hand-off to Prefect to its final callback, by outcome",
    ["outcome"],
    buckets=BUCKETS,
)


def serve(host: str, port: int) -> bool:
    """Serve the metrics on a thread of their own; False (and a logged error) when the
    port is taken: a worker without metrics still runs its tasks."""
    if port == 0:
        return False
    try:
        start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as error:
        log.error("cannot serve metrics on %s:%d: %s", host, port, error)
        return False
    log.info("metrics at http://%s:%d/metrics", host, port)
    return True
