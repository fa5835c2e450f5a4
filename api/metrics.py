"""The API's Prometheus metrics, served at `GET /metrics`.

Each API process counts the requests it answers; a Prometheus scraping every process
sums them. The backlog is read when scraped: the tasks waiting in this process's
journal, and the flow runs of the deployment that Prefect holds and that have not ended
(the same figure from every API process of the service, so take its max, not its sum).
What the worker does with the tasks is counted by the worker (flows.metrics).
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    generate_latest,
)

# Why `/compute` refused a task: the backlog is full (503), the body is malformed (422),
# a host is outside ALLOWED_HOSTS (422), the body is over MAX_BODY_BYTES (413).
REJECTION_REASONS = ("backlog_full", "invalid", "host_not_allowed", "too_large")
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ApiMetrics:
    """The counters of one API process, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.accepted = Counter(
            "core_service_tasks_accepted",
            "POST /compute answered 200 (a task posted twice counts twice)",
            registry=self.registry,
        )
        self._rejected = Counter(
            "core_service_tasks_rejected",
            "POST /compute refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self._backlog = Gauge(
            "core_service_backlog_tasks",
            "Tasks accepted and not ended: waiting in this process's journal (journal), "
            "or held by Prefect and not ended (prefect)",
            ["where"],
            registry=self.registry,
        )
        for reason in REJECTION_REASONS:
            self._rejected.labels(reason)

    def rejected(self, reason: str) -> None:
        self._rejected.labels(reason).inc()

    def render(self, *, journal: int, prefect: int) -> bytes:
        """The text a Prometheus scrapes, with the backlog as it is now."""
        self._backlog.labels("journal").set(journal)
        self._backlog.labels("prefect").set(prefect)
        return generate_latest(self.registry)
