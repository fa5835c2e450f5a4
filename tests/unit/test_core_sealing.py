"""core.sealing: S3 credentials travel through Prefect only as Fernet ciphertext."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from core.sealing import Credentials, Sealer, SealingError, new_key

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CREDENTIALS = Credentials(access_key_id="AKIAEXAMPLE", secret_access_key=SECRET)


def sealer(keys: str) -> Sealer:
    return Sealer(SecretStr(keys))


def test_seal_then_unseal_gives_the_credentials_back() -> None:
    """unseal(seal(c)) == c."""
    box = sealer(new_key())
    assert box.unseal(box.seal(CREDENTIALS)) == CREDENTIALS


def test_token_does_not_contain_the_secret() -> None:
    """The sealed token shows neither the secret nor the access key id."""
    token = sealer(new_key()).seal(CREDENTIALS)
    assert SECRET not in token
    assert "AKIAEXAMPLE" not in token
    assert token.isascii()


def test_sealing_twice_gives_different_tokens() -> None:
    """Tokens are randomised, so equal credentials are not recognisable in Prefect."""
    box = sealer(new_key())
    assert box.seal(CREDENTIALS) != box.seal(CREDENTIALS)


def test_unseal_with_another_key_raises_sealing_error_without_secret() -> None:
    """A token sealed with one key cannot be opened with another; the error shows no secret."""
    key = new_key()
    token = sealer(key).seal(CREDENTIALS)
    other = new_key()
    with pytest.raises(SealingError) as caught:
        sealer(other).unseal(token)
    message = str(caught.value)
    assert "SEALING_KEY" in message
    for secret in (SECRET, key, other, token):
        assert secret not in message
        assert secret not in repr(caught.value)


@pytest.mark.parametrize("token", ["", "garbage", "gAAAAA" + "A" * 80])
def test_unseal_of_garbage_raises_sealing_error(token: str) -> None:
    """A token that is not a Fernet token of this key is a SealingError."""
    with pytest.raises(SealingError):
        sealer(new_key()).unseal(token)


def test_unseal_of_a_tampered_token_raises_sealing_error() -> None:
    """Changing one character of a token makes it unopenable."""
    box = sealer(new_key())
    token = box.seal(CREDENTIALS)
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    with pytest.raises(SealingError):
        box.unseal(tampered)


def test_key_rotation_opens_tokens_sealed_with_the_old_key() -> None:
    """With SEALING_KEY "new,old", tokens sealed with old still open."""
    old, new = new_key(), new_key()
    old_token = sealer(old).seal(CREDENTIALS)
    rotated = sealer(f"{new},{old}")
    assert rotated.unseal(old_token) == CREDENTIALS


def test_key_rotation_seals_with_the_first_key() -> None:
    """With SEALING_KEY "new,old", new tokens open with new alone, not with old alone."""
    old, new = new_key(), new_key()
    token = sealer(f"{new}, {old}").seal(CREDENTIALS)
    assert sealer(new).unseal(token) == CREDENTIALS
    with pytest.raises(SealingError):
        sealer(old).unseal(token)


@pytest.mark.parametrize("keys", ["", "   ", ",", " , ,"])
def test_empty_key_raises_value_error(keys: str) -> None:
    """An empty SEALING_KEY (or only separators) is refused."""
    with pytest.raises(ValueError, match="SEALING_KEY"):
        sealer(keys)


@pytest.mark.parametrize("keys", ["not-a-key", "c2hvcnQ=", "x" * 44])
def test_malformed_key_raises_value_error_without_the_key(keys: str) -> None:
    """A key that is not url-safe base64 of 32 bytes is refused; the message hides it."""
    with pytest.raises(ValueError, match="SEALING_KEY") as caught:
        sealer(keys)
    assert keys not in str(caught.value)


def test_one_malformed_key_among_good_ones_is_refused() -> None:
    """Every comma-separated key must be valid, not just the first."""
    with pytest.raises(ValueError, match="SEALING_KEY"):
        sealer(f"{new_key()},not-a-key")


def test_credentials_repr_hides_the_secret() -> None:
    """repr and str of Credentials show the access key id but not the secret."""
    assert SECRET not in repr(CREDENTIALS)
    assert SECRET not in str(CREDENTIALS)
    assert "AKIAEXAMPLE" in repr(CREDENTIALS)


def test_new_key_is_a_usable_fresh_key() -> None:
    """new_key() gives a different valid key each call."""
    first, second = new_key(), new_key()
    assert first != second
    sealer(first)
    sealer(second)
