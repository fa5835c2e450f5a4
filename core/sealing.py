"""Seal S3 credentials so that Prefect stores and shows only ciphertext.

Flow-run parameters are kept in clear in Prefect's database and UI, so the credentials
travel as a Fernet token that only processes holding `SEALING_KEY` can open.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr


class SealingError(Exception):
    """A token that the configured keys cannot open (wrong key, or tampered with)."""


@dataclass(frozen=True)
class Credentials:
    """S3 credentials in clear; `repr` hides the secret."""

    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:
        return f"Credentials(access_key_id={self.access_key_id!r}, secret_access_key='***')"


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

    def seal(self, credentials: Credentials) -> str:
        plain = json.dumps([credentials.access_key_id, credentials.secret_access_key])
        return self._fernet.encrypt(plain.encode()).decode()

    def unseal(self, token: str) -> Credentials:
        try:
            access_key_id, secret_access_key = json.loads(self._fernet.decrypt(token.encode()))
        except (InvalidToken, ValueError) as error:
            raise SealingError(
                "sealed S3 credentials cannot be opened with this SEALING_KEY"
            ) from error
        return Credentials(access_key_id, secret_access_key)


def new_key() -> str:
    """A fresh key, for `.env` files and deployments."""
    return Fernet.generate_key().decode()
