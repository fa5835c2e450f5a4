"""The distributed mode's port plan on one machine."""

from __future__ import annotations

from deployments.scaled import worker_metrics_ports


def test_each_worker_serves_metrics_on_its_own_port_after_the_apis() -> None:
    """Workers get one port each, from WORKER_METRICS_PORT on, never an API's port."""
    ports = worker_metrics_ports({"WORKER_METRICS_PORT": "9091"}, [9090, 9091], 3)
    assert ports == [9092, 9093, 9094]
    assert worker_metrics_ports({"WORKER_METRICS_PORT": "9500"}, [9090, 9091], 2) == [9500, 9501]


def test_no_metrics_ports_when_metrics_are_off() -> None:
    """WORKER_METRICS_PORT=0 (or unset) leaves every worker without metrics."""
    assert worker_metrics_ports({"WORKER_METRICS_PORT": "0"}, [9090], 2) == []
    assert worker_metrics_ports({}, [9090], 2) == []
