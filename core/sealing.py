"""Seal S3 credentials so that Prefect stores and shows only ciphertext, bound to their task.

Flow-run parameters are kept in clear in Prefect's database and UI, so the credentials
travel as a Fernet token that only processes holding `SEALING_KEY` can open. Whoever can
read a run's parameters can also copy its token into a run of their own, so a token
seals, with the credentials, the id of the task and the S3 host they were given for, and
opens for that task and that host only: copied into another task's run, or pointed at
another S3, it is refused, and the refusal says which.

The binding is sealed in the payload and compared once the token is open, rather than
passed as the associated data of an AEAD (AES-GCM), because that is the simpler of two
equally sound ways: Fernet authenticates the whole token (HMAC-SHA256 over its version,
time, IV and ciphertext) before decrypting anything, so the task id and host inside can
no more be changed without the key than associated data could; SEALING_KEY keeps its
format, and its rotation (several keys, the first sealing: MultiFernet) its code; and a
token that opens can say which binding it breaks, where an AEAD's mismatch cannot be
told from a wrong key.

A token sealed before the binding (a bare pair of access key id and secret) is refused,
saying so: its task must be submitted again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from uuid import UUID

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

_NOT_OPENED = (
    "sealed S3 credentials cannot be opened with this SEALING_KEY "
    "(sealed with another key, altered, or not a token)"
)
_UNBOUND = (
    "sealed S3 credentials are not bound to a task and S3 host (sealed before tokens "
    "were): the task must be submitted again"
)


class SealingError(Exception):
    """A token that does not open here: sealed with another key, altered, not a token, or
    sealed for another task or S3 host. Its message names no secret."""


@dataclass(frozen=True)
class Credentials:
    """S3 credentials in clear; `repr` hides the secret."""

    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:
        return f"Credentials(access_key_id={self.access_key_id!r}, secret_access_key='***')"


def _host(s3_host: str) -> str:
    # The API stores the host without its trailing slash; a run made by hand may add one.
    return s3_host.rstrip("/")


class Sealer:
    """Seals with the first key, opens with any of them (so keys can be rotated)."""

    def __init__(self, keys: SecretStr) -> None:
        parts = [part.strip() for part in keys.get_secret_value().split(",") if part.strip()]
        if not parts:
            raise ValueError("SEALING_KEY is empty")
        try:
            self._fernet = MultiFernet([Fernet(part) for part in parts])
        except ValueError as error:
            raise ValueError(
                "SEALING_KEY must be url-safe base64 Fernet keys, comma-separated"
            ) from error

    def seal(self, credentials: Credentials, *, task_id: UUID, s3_host: str) -> str:
        """A token of `credentials` that opens for `task_id` and `s3_host` only."""
        payload = {
            "task": str(task_id),
            "host": _host(s3_host),
            "key": credentials.access_key_id,
            "secret": credentials.secret_access_key,
        }
        plain = json.dumps(payload, separators=(",", ":"))
        return self._fernet.encrypt(plain.encode()).decode()

    def unseal(self, token: str, *, task_id: UUID, s3_host: str) -> Credentials:
        """The credentials of `token`, if it was sealed for `task_id` and `s3_host`."""
        payload = self._open(token)
        # Raised outside any `except`: no exception chained to these holds the payload.
        if not isinstance(payload, dict):
            raise SealingError(_UNBOUND if isinstance(payload, list) else _NOT_OPENED)
        if payload.get("task") != str(task_id):
            raise SealingError(
                f"sealed S3 credentials were sealed for another task, not for task {task_id}: "
                "a token opens only for the task it was sealed for"
            )
        if payload.get("host") != _host(s3_host):
            raise SealingError(
                f"sealed S3 credentials were sealed for another S3 host, not for "
                f"{_host(s3_host)}: a token opens only for the S3 host it was sealed for"
            )
        access_key_id, secret_access_key = payload.get("key"), payload.get("secret")
        if not isinstance(access_key_id, str) or not isinstance(secret_access_key, str):
            raise SealingError(_NOT_OPENED)
        return Credentials(access_key_id, secret_access_key)

    def _open(self, token: str) -> object:
        """The payload of `token`, or a SealingError that chains nothing."""
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except (InvalidToken, ValueError):
            pass
        # Raised past the `except`, so that no exception is chained (a JSON error would
        # hold the opened payload).
        raise SealingError(_NOT_OPENED)


def new_key() -> str:
    """A fresh key, for `.env` files and deployments."""
    return Fernet.generate_key().decode()
