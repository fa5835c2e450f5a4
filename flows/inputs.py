"""Checking a run before anything is fetched: the hosts it names, its sealed credentials,
and its inputs against the service's fields.

Prefect's server is a second way in: whoever reaches its API or UI can create a run of
the deployment with parameters of their own, or copy a real run's. So the worker applies
the API's rule again to every run it executes, before any request: `callback_url` and
the S3 host must be in ALLOWED_HOSTS (`core.settings.host_allowed`), and the sealed
credentials must open for the run's own task and S3 host (core.sealing).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from contract.description import FieldDescription, FieldType, type_of_key
from core.runs import RunParameters
from core.sealing import Credentials, Sealer, SealingError
from core.settings import host_allowed, url_host
from flows.errors import PermanentError


class CallbackRefused(PermanentError):
    """`callback_url` names a host outside ALLOWED_HOSTS (or is no http(s) URL): no
    callback may go there, the error callback included."""


def _refusal(url: str, allowed: list[str], name: str, host_name: str) -> str | None:
    """Why `url` may not be called, or None; `name` and `host_name` say what it is."""
    try:
        scheme = urlsplit(url).scheme
    except ValueError:  # an IPv6 host without its closing bracket, say
        scheme = ""
    if scheme not in ("http", "https"):
        return f"{name} is not an http(s) URL"
    if not host_allowed(url, allowed):
        return f"{host_name} {url_host(url) or url} is not in ALLOWED_HOSTS"
    return None


def check_callback(callback_url: str, allowed: list[str]) -> None:
    """Raise CallbackRefused unless `callback_url` may be PATCHed."""
    refusal = _refusal(callback_url, allowed, "callback_url", "callback_url host")
    if refusal is not None:
        raise CallbackRefused(refusal)


def admit(parameters: RunParameters, allowed: list[str], sealer: Sealer) -> Credentials:
    """The run's S3 credentials, once its hosts are allowed and its token opens for its
    own task and S3 host. A refusal is permanent (never retried) and names the host or
    the binding at fault, never a secret: CallbackRefused when the callback_url is
    refused (the engine must not be called there), a PermanentError otherwise."""
    check_callback(parameters.callback_url, allowed)
    refusal = _refusal(parameters.s3.host, allowed, "S3 host", "S3 host")
    if refusal is not None:
        raise PermanentError(refusal)
    try:
        return sealer.unseal(
            parameters.s3.sealed_credentials,
            task_id=parameters.task_id,
            s3_host=parameters.s3.host,
        )
    except SealingError as error:
        raise PermanentError(str(error)) from None


@dataclass(frozen=True)
class PairedInput:
    """`data_in[i]` paired with `data_in_fields[i]`, and the type its key says."""

    field: str
    key: str
    type: FieldType


def _types(field: FieldDescription) -> str:
    return ", ".join(t.value for t in field.type)


def pair_inputs(fields: list[FieldDescription], data_in: list[str]) -> list[PairedInput]:
    """Pair keys with fields by position; refuse a wrong count or a type a field does not list."""
    if len(data_in) != len(fields):
        names = ", ".join(field.name for field in fields)
        raise PermanentError(f"expected {len(fields)} input(s) ({names}), got {len(data_in)}")
    paired = []
    for field, key in zip(fields, data_in, strict=True):
        key_type = type_of_key(key)
        if key_type is None:
            raise PermanentError(
                f"input '{field.name}': key '{key}' has no known type; "
                f"expected one of {_types(field)}"
            )
        if key_type not in field.type:
            raise PermanentError(
                f"input '{field.name}': type {key_type.value} is not one of {_types(field)}"
            )
        paired.append(PairedInput(field.name, key, key_type))
    return paired
