"""api.metrics: the API's counters and backlog, as a Prometheus reads them."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from api.metrics import REJECTION_REASONS, ApiMetrics


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def test_a_fresh_process_shows_every_reason_at_zero() -> None:
    """Every rejection reason is exposed from the start, so a rate over it is defined."""
    read = samples(ApiMetrics().render(journal=0, prefect=0))
    for reason in REJECTION_REASONS:
        assert read[("core_service_tasks_rejected_total", (("reason", reason),))] == 0
    assert read[("core_service_tasks_accepted_total", ())] == 0


def test_counts_and_backlog_are_rendered() -> None:
    """Accepted and rejected tasks are counted; the backlog is what the scrape is told."""
    metrics = ApiMetrics()
    metrics.accepted.inc()
    metrics.accepted.inc()
    metrics.rejected("invalid")
    read = samples(metrics.render(journal=3, prefect=7))
    assert read[("core_service_tasks_accepted_total", ())] == 2
    assert read[("core_service_tasks_rejected_total", (("reason", "invalid"),))] == 1
    assert read[("core_service_tasks_rejected_total", (("reason", "too_large"),))] == 0
    assert read[("core_service_backlog_tasks", (("where", "journal"),))] == 3
    assert read[("core_service_backlog_tasks", (("where", "prefect"),))] == 7


def test_each_app_counts_on_its_own() -> None:
    """Two registries do not share counts (each API process is its own scrape target)."""
    first, second = ApiMetrics(), ApiMetrics()
    first.accepted.inc()
    read = samples(second.render(journal=0, prefect=0))
    assert read[("core_service_tasks_accepted_total", ())] == 0


def test_process_figures_are_included() -> None:
    """The process's CPU and memory come with the counters."""
    text = ApiMetrics().render(journal=0, prefect=0).decode()
    assert "process_resident_memory_bytes" in text
