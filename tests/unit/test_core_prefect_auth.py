"""core.prefect_auth: when the Prefect server is a door left open."""

from __future__ import annotations

from core.prefect_auth import on_loopback, open_door


def test_loopback_by_name_and_by_address() -> None:
    """localhost, 127.0.0.0/8 and ::1 are the loopback; names and other addresses are not."""
    assert on_loopback("http://localhost:4200/api")
    assert on_loopback("http://127.0.0.1:4200/api")
    assert on_loopback("http://127.3.2.1/api")
    assert on_loopback("http://[::1]:4200/api")
    assert not on_loopback("http://prefect-server:4200/api")
    assert not on_loopback("http://10.0.0.5:4200/api")
    assert not on_loopback("http://0.0.0.0:4200/api")


def test_production_beyond_the_loopback_needs_credentials() -> None:
    """In production, Prefect's API on another host without an auth string is refused,
    and the reason names both of Prefect's settings."""
    reason = open_door("production", "http://prefect-server:4200/api", None)
    assert reason is not None
    assert "PREFECT_API_AUTH_STRING" in reason
    assert "PREFECT_SERVER_API_AUTH_STRING" in reason
    assert open_door("production", "http://prefect-server:4200/api", "") is not None


def test_credentials_the_loopback_or_development_leave_it_closed() -> None:
    """An auth string, a loopback API, or an environment other than production: no refusal."""
    assert open_door("production", "http://prefect-server:4200/api", "admin:pass") is None
    assert open_door("production", "http://127.0.0.1:4200/api", None) is None
    assert open_door("development", "http://prefect-server:4200/api", None) is None
    assert open_door("test", "http://prefect-server:4200/api", None) is None
