"""What a flow run needs from its process: settings, the sealer, the service, the pool.

Built once per process from the environment, so the flow runs the same under this
project's worker and under any stock Prefect worker that loads `flows/compute.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from core.sealing import Sealer
from core.settings import WorkerSettings
from flows.processing import ProcessPool
from services.base import Service, load_service


@dataclass(frozen=True)
class Runtime:
    settings: WorkerSettings
    sealer: Sealer
    service: Service
    pool: ProcessPool


@cache
def runtime() -> Runtime:
    settings = WorkerSettings()  # required values come from the env
    service = load_service(settings.service_module)
    return Runtime(
        settings=settings,
        sealer=Sealer(settings.sealing_key),
        service=service,
        pool=ProcessPool(service, settings.process_pool_size),
    )
