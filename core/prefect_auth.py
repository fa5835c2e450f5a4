"""Whether the Prefect server this process talks to is a door left open.

The API guards its own door (ALLOWED_HOSTS, sealed credentials, bounded bodies). The
Prefect server is a second one: whoever reaches its API or UI can read every run, cancel
or retry it, and create runs of the deployment. Prefect's own answer is an auth string:
the server asks every request for it (PREFECT_SERVER_API_AUTH_STRING, HTTP basic; only
GET /api/health answers without) and its clients send it (PREFECT_API_AUTH_STRING). On
the loopback only this machine reaches the server; anywhere else, in production, the API
and the worker refuse to start without the credentials rather than run beside an open
door.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from prefect.settings import get_current_settings


class OpenPrefect(Exception):
    """Production, Prefect's API beyond the loopback, and no credentials for it."""


def on_loopback(url: str) -> bool:
    """True when `url`'s host is this machine's loopback (by name or address)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_door(environment: str, api_url: str | None, auth_string: str | None) -> str | None:
    """Why a process of `environment` must not use Prefect's API at `api_url` with
    `auth_string`; None when it may."""
    if environment != "production" or not api_url or on_loopback(api_url) or auth_string:
        return None
    return (
        f"PREFECT_API_AUTH_STRING is not set, and Prefect's API ({api_url}) is not on the "
        "loopback: in production its server must ask for credentials "
        "(PREFECT_SERVER_API_AUTH_STRING) and this process must send them "
        "(PREFECT_API_AUTH_STRING, the same user:password)"
    )


def require_closed_door(environment: str) -> None:
    """OpenPrefect, naming the settings, unless Prefect's API (as Prefect reads its own
    settings) is on the loopback, or outside production, or given credentials."""
    api = get_current_settings().api
    auth = api.auth_string.get_secret_value() if api.auth_string is not None else None
    reason = open_door(environment, api.url, auth)
    if reason is not None:
        raise OpenPrefect(reason)
