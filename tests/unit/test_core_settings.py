"""core.settings: names and defaults of CONTRACT.md §6, read from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from core.sealing import new_key
from core.settings import (
    DEFAULT_RUN_RETENTION,
    DEVELOPMENT_SEALING_KEY,
    ApiSettings,
    CommonSettings,
    WorkerSettings,
    host_allowed,
    url_host,
)

ALL_FIELDS = set(ApiSettings.model_fields) | set(WorkerSettings.model_fields)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting comes from the environment of whoever runs the tests."""
    for name in list(os.environ):
        if name.lower() in ALL_FIELDS:
            monkeypatch.delenv(name)


def test_missing_sealing_key_is_a_validation_error_naming_it() -> None:
    """Without SEALING_KEY no settings can be built, and the error says which is missing."""
    for settings_class in (CommonSettings, ApiSettings, WorkerSettings):
        with pytest.raises(ValidationError) as caught:
            settings_class(_env_file=None)
        errors = caught.value.errors()
        assert [(error["loc"], error["type"]) for error in errors] == [
            (("sealing_key",), "missing")
        ]


def test_sealing_key_is_read_from_the_environment_and_kept_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SEALING_KEY comes from the environment and is not shown by repr."""
    key = new_key()
    monkeypatch.setenv("SEALING_KEY", key)
    settings = CommonSettings(_env_file=None)
    assert settings.sealing_key.get_secret_value() == key
    assert key not in repr(settings)
    assert key not in str(settings)


def test_engine_urls_are_parsed_from_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """ENGINE_URLS is a JSON list of URLs."""
    monkeypatch.setenv("SEALING_KEY", new_key())
    monkeypatch.setenv("ENGINE_URLS", '["http://localhost:8080", "http://engine-2:8080"]')
    settings = ApiSettings(_env_file=None)
    assert settings.engine_urls == ["http://localhost:8080", "http://engine-2:8080"]


def test_engine_urls_empty_list_runs_standalone(monkeypatch: pytest.MonkeyPatch) -> None:
    """ENGINE_URLS=[] gives no engines."""
    monkeypatch.setenv("SEALING_KEY", new_key())
    monkeypatch.setenv("ENGINE_URLS", "[]")
    assert ApiSettings(_env_file=None).engine_urls == []


def test_engine_urls_that_are_not_json_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bare URL in ENGINE_URLS (not a JSON list) is an error, not silently ignored."""
    monkeypatch.setenv("SEALING_KEY", new_key())
    monkeypatch.setenv("ENGINE_URLS", "http://localhost:8080")
    with pytest.raises(Exception, match="engine_urls"):
        ApiSettings(_env_file=None)


def test_api_defaults_are_those_of_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without environment or .env, the API settings take CONTRACT.md §6's defaults."""
    monkeypatch.setenv("SEALING_KEY", new_key())
    settings = ApiSettings(_env_file=None)
    assert settings.service_port == 9090
    assert settings.service_url == "http://localhost:9090"
    assert settings.max_tasks == 50
    assert settings.engine_announce_retries == 5
    assert settings.engine_announce_retry_delay == 3
    assert settings.environment == "development"
    assert settings.log_level == "debug"


def test_common_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shared settings default to the image-rotate service and no fixed work pool."""
    monkeypatch.setenv("SEALING_KEY", new_key())
    settings = CommonSettings(_env_file=None)
    assert settings.service_module == "services.image_rotate"
    assert settings.environment == "development"
    assert settings.log_level == "debug"
    assert settings.work_pool == ""


def test_environment_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment variables (any case of name) override the defaults."""
    monkeypatch.setenv("SEALING_KEY", new_key())
    monkeypatch.setenv("SERVICE_PORT", "8001")
    monkeypatch.setenv("MAX_TASKS", "7")
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("LOG_LEVEL", "warning")
    settings = ApiSettings(_env_file=None)
    assert settings.service_port == 8001
    assert settings.max_tasks == 7
    assert settings.environment == "production"
    assert settings.log_level == "warning"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ENVIRONMENT", "staging"),
        ("LOG_LEVEL", "verbose"),
        ("MAX_TASKS", "0"),
        ("SERVICE_PORT", "port"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """Values outside what a setting allows are a validation error naming the setting."""
    monkeypatch.setenv("SEALING_KEY", new_key())
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        ApiSettings(_env_file=None)
    assert [error["loc"] for error in caught.value.errors()] == [(name.lower(),)]


@pytest.mark.parametrize(
    ("environment", "allowed", "expected"),
    [
        ("development", None, ["*"]),
        ("test", None, ["*"]),
        ("production", None, ["engine", "engine-2"]),
        ("production", '["minio:9000", "engine"]', ["minio:9000", "engine"]),
    ],
)
def test_allowed_hosts_default_by_environment(
    monkeypatch: pytest.MonkeyPatch, environment: str, allowed: str | None, expected: list[str]
) -> None:
    """Unset, ALLOWED_HOSTS is any host outside production and the engines' hosts in it;
    the API and the worker read the same rule from the same variables."""
    monkeypatch.setenv("SEALING_KEY", new_key())
    monkeypatch.setenv("ENVIRONMENT", environment)
    monkeypatch.setenv("ENGINE_URLS", '["http://engine:8080", "https://engine-2"]')
    if allowed is not None:
        monkeypatch.setenv("ALLOWED_HOSTS", allowed)
    assert ApiSettings(_env_file=None).hosts_allowed() == expected
    assert WorkerSettings(_env_file=None).hosts_allowed() == expected


@pytest.mark.parametrize(
    ("url", "allowed", "expected"),
    [
        ("http://engine:8080/tasks/1", ["*"], True),
        ("not a url", ["*"], True),
        ("http://engine:8080/tasks/1", ["engine"], True),
        ("http://ENGINE:8080/tasks/1", ["engine:8080"], True),
        ("http://engine/tasks/1", ["ENGINE"], True),
        ("http://engine:8081/tasks/1", ["engine:8080"], False),
        ("http://169.254.169.254/latest", ["engine"], False),
        ("http://engine.evil.org/", ["engine"], False),
        ("http://engine/", [], False),
        ("http://engine:99999/", ["engine"], False),
        ("http://[::1/", ["engine"], False),
        ("/tasks/1", [""], False),
    ],
)
def test_host_allowed(url: str, allowed: list[str], expected: bool) -> None:
    """A host is allowed by its name, or its name and port, or by "*"; nothing else, and
    not a URL that names no host or a port that is not one."""
    assert host_allowed(url, allowed) is expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://Engine:8080/tasks/1", "engine:8080"),
        ("https://engine/tasks/1", "engine"),
        ("http://engine:99999/", ""),
        ("not a url", ""),
    ],
)
def test_url_host_is_the_host_as_allowed_hosts_names_it(url: str, expected: str) -> None:
    """url_host gives `name` or `name:port`, lower case; "" when there is none."""
    assert url_host(url) == expected


def test_production_refuses_the_development_sealing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The key committed in .env stops a production process at start, saying why."""
    monkeypatch.setenv("SEALING_KEY", DEVELOPMENT_SEALING_KEY)
    monkeypatch.setenv("ENVIRONMENT", "production")
    with pytest.raises(ValidationError, match="development key"):
        CommonSettings(_env_file=None)
    monkeypatch.setenv("ENVIRONMENT", "development")
    assert CommonSettings(_env_file=None).environment == "development"


def test_development_key_constant_is_the_one_in_dot_env() -> None:
    """The refused key is the one `.env` really holds."""
    dot_env = Path(__file__).resolve().parents[2] / ".env"
    assert f"SEALING_KEY={DEVELOPMENT_SEALING_KEY}\n" in dot_env.read_text()


def test_run_retention_defaults_to_a_week_for_every_role(monkeypatch: pytest.MonkeyPatch) -> None:
    """RUN_RETENTION is one setting, read by the API and the worker alike: a week unset."""
    monkeypatch.setenv("SEALING_KEY", new_key())
    assert [cls(_env_file=None).run_retention for cls in (ApiSettings, WorkerSettings)] == [
        604_800,
        604_800,
    ]
    monkeypatch.setenv("RUN_RETENTION", "3601")
    monkeypatch.setenv("RESULT_TTL", "3600")
    assert [cls(_env_file=None).run_retention for cls in (ApiSettings, WorkerSettings)] == [
        3601,
        3601,
    ]


@pytest.mark.parametrize("value", ["3600", "60", "0", "-1"])
def test_run_retention_of_an_hour_or_less_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """Prefect's vacuum refuses a retention of an hour or less: so does RUN_RETENTION, saying
    so at start rather than leaving the Prefect server to fail."""
    monkeypatch.setenv("SEALING_KEY", new_key())
    monkeypatch.setenv("RUN_RETENTION", value)
    with pytest.raises(ValidationError, match="RUN_RETENTION must be more than 3600") as caught:
        CommonSettings(_env_file=None)
    assert [error["loc"] for error in caught.value.errors()] == [("run_retention",)]


def test_result_ttl_beyond_run_retention_is_refused_naming_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A result may not outlive the run it resumes: RESULT_TTL above RUN_RETENTION stops the
    worker at start; equal is allowed."""
    monkeypatch.setenv("SEALING_KEY", new_key())
    monkeypatch.setenv("RUN_RETENTION", "7200")
    monkeypatch.setenv("RESULT_TTL", "7201")
    with pytest.raises(ValidationError, match=r"RESULT_TTL \(7201 s\).*RUN_RETENTION \(7200 s\)"):
        WorkerSettings(_env_file=None)
    monkeypatch.setenv("RESULT_TTL", "7200")
    assert WorkerSettings(_env_file=None).result_ttl == 7200


def test_dot_env_lists_run_retention_with_its_default() -> None:
    """`.env`, which lists every setting, holds RUN_RETENTION at its default."""
    dot_env = Path(__file__).resolve().parents[2] / ".env"
    assert f"\nRUN_RETENTION={DEFAULT_RUN_RETENTION}\n" in dot_env.read_text()
