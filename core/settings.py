"""Settings from the environment and `.env`, one class per process role.

Names follow the engine's reference service (CONTRACT.md §6); every setting is listed
with its meaning in docs/configuration.md and in `.env`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["development", "test", "production"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
LogFormat = Literal["auto", "text", "json"]


# The SEALING_KEY committed in `.env` for development: public, so never for production.
DEVELOPMENT_SEALING_KEY = "kANEMC_eepJL2a89BzGPbz5yr6_nSUPvvWf1LChQHEc="

# RUN_RETENTION's default, a week; Prefect's database vacuum refuses an hour or less.
DEFAULT_RUN_RETENTION = 604_800
_SHORTEST_RUN_RETENTION = 3600


def checked_run_retention(seconds: int) -> int:
    """RUN_RETENTION if Prefect's vacuum takes it; a ValueError naming it otherwise."""
    if seconds <= _SHORTEST_RUN_RETENTION:
        raise ValueError(
            f"RUN_RETENTION must be more than {_SHORTEST_RUN_RETENTION} seconds (an hour), "
            f"not {seconds}: Prefect's database vacuum refuses a shorter retention"
        )
    return seconds


def _host_and_port(url: str) -> tuple[str, int | None] | None:
    """The host of `url` (lower case) and its port; None when it names no host, or a port
    that is not one."""
    try:
        parts = urlsplit(url)
        host, port = (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None
    return (host, port) if host else None


def url_host(url: str) -> str:
    """The host of `url` as ALLOWED_HOSTS names it (`name`, or `name:port` when it has a
    port); "" when it names none."""
    found = _host_and_port(url)
    if found is None:
        return ""
    host, port = found
    return f"{host}:{port}" if port else host


def host_allowed(url: str, allowed: list[str]) -> bool:
    """True when `url`'s host (or host:port) is in `allowed`, or `allowed` has "*"."""
    if "*" in allowed:
        return True
    found = _host_and_port(url)
    if found is None:
        return False
    host, port = found
    names = {host, f"{host}:{port}"} if port else {host}
    return any(entry.lower() in names for entry in allowed)


class CommonSettings(BaseSettings):
    """Settings every role reads."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    service_module: str = "services.image_rotate"
    # Required: a Fernet key (or several, comma-separated, the first sealing) that seals
    # S3 credentials before they are stored in Prefect.
    sealing_key: SecretStr
    environment: Environment = "development"
    log_level: LogLevel = "debug"
    # json: one object per line; text: readable lines; auto: JSON in production unless
    # stderr is a terminal, text otherwise.
    log_format: LogFormat = "auto"
    # Work pool the deployment runs in; empty means one named after the service's slug,
    # so two services sharing a Prefect server never take each other's runs.
    work_pool: str = ""
    # Seconds a task's traces are kept. Prefect's database vacuum (which the launchers,
    # Compose and Kubernetes switch on with this value) deletes the flow runs that ended
    # longer ago, with their task runs and logs, and older events; results are kept
    # RESULT_TTL, at most this; a task Prefect never took for this long is ended
    # (api.expiry).
    run_retention: int = DEFAULT_RUN_RETENTION
    # The engines (a JSON list): the API registers with them; in production, unless
    # ALLOWED_HOSTS says otherwise, their hosts are the only ones allowed.
    engine_urls: list[str] = Field(default_factory=list)
    # Hosts (`name` or `name:port`) that callback_url and s3_host may name; ["*"] allows
    # any. Unset: any in development and test, the hosts of ENGINE_URLS in production.
    # The API refuses a task naming another; the worker, a run naming another (one made
    # through Prefect's API or UI rather than the API), before any request.
    allowed_hosts: list[str] | None = None

    def hosts_allowed(self) -> list[str]:
        """ALLOWED_HOSTS, or its default for the environment (see `host_allowed`)."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        if self.environment != "production":
            return ["*"]
        return [urlsplit(url).hostname or "" for url in self.engine_urls]

    @field_validator("run_retention")
    @classmethod
    def _retention_prefect_takes(cls, seconds: int) -> int:
        return checked_run_retention(seconds)

    @model_validator(mode="after")
    def _secret_key_in_production(self) -> CommonSettings:
        if self.environment == "production" and DEVELOPMENT_SEALING_KEY in (
            self.sealing_key.get_secret_value()
        ):
            raise ValueError(
                "SEALING_KEY is the development key from .env; production needs its own secret key"
            )
        return self


class ApiSettings(CommonSettings):
    """The HTTP face (`python -m api`)."""

    # Largest request body /compute reads; an engine's task is a few kilobytes.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    service_url: str = "http://localhost:9090"
    service_host: str = "127.0.0.1"
    service_port: int = 9090
    max_tasks: int = Field(default=50, ge=1)
    # The journal where accepted tasks wait until Prefect holds their flow runs.
    intake_path: Path = Path(".data/intake.db")
    engine_announce_retries: int = 5
    engine_announce_retry_delay: float = 3.0
    # Seconds between heartbeats (POST {engine}/services/{slug}/ping); the engine marks a
    # service sleeping after 50 s without one.
    engine_heartbeat_interval: float = Field(default=20.0, gt=0)


class WorkerSettings(CommonSettings):
    """The process that executes flow runs (`python -m flows`)."""

    worker_name: str = ""
    worker_limit: int = Field(default=8, ge=1)
    worker_poll_interval: float = Field(default=2.0, gt=0)
    # Seconds between heartbeats; a worker silent for 3 of them is taken for dead and its
    # runs are scheduled again.
    worker_heartbeat_seconds: int = Field(default=30, ge=1)
    # Seconds a stopping worker lets its runs finish before handing them back.
    worker_shutdown_grace: float = Field(default=30.0, ge=0)
    process_pool_size: int = Field(default=1, ge=1)
    transient_retries: int = Field(default=5, ge=0)
    # More for the callback: with the default delay, 8 retries span about two minutes of
    # an engine that is down or restarting (no delay is longer than 30 s).
    callback_retries: int = Field(default=8, ge=0)
    retry_base_delay: float = Field(default=1.0, ge=0)
    # An outcome the engine has not taken after those retries is delivered again by a new
    # execution of its run (flows.redelivery), scheduled this many seconds later, twice
    # as long each time up to REDELIVERY_MAX_DELAY, for as long as RESULT_TTL keeps the
    # stages' results.
    redelivery_delay: float = Field(default=60.0, gt=0)
    redelivery_max_delay: float = Field(default=3600.0, gt=0)
    s3_timeout: float = Field(default=10.0, gt=0)
    callback_timeout: float = Field(default=10.0, gt=0)
    # PATCH `fetching`, `processing` and `saving` to the engine as each stage starts (the
    # reference service sends only the final status).
    progress_updates: bool = False
    # Where the worker serves its Prometheus metrics (GET /metrics); port 0 serves none.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9091, ge=0, le=65535)
    # Where the stages' results are kept, so that a rerun resumes where the task stopped
    # (flows.results): a folder, or `s3://bucket[/prefix]` that every worker reaches (with
    # AWS's own credential settings, and RESULT_S3_ENDPOINT for an S3 other than AWS).
    result_storage: str = ".data/results"
    result_s3_endpoint: str = ""
    # Seconds a result is kept, and used for a rerun, before it is deleted; at most
    # RUN_RETENTION, after which the run it would resume is gone.
    result_ttl: int = Field(default=86_400, ge=1)

    @model_validator(mode="after")
    def _results_within_retention(self) -> WorkerSettings:
        if self.result_ttl > self.run_retention:
            raise ValueError(
                f"RESULT_TTL ({self.result_ttl} s) must not exceed RUN_RETENTION "
                f"({self.run_retention} s): a result would outlive the run it resumes"
            )
        return self
