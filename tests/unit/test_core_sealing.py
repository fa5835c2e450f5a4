"""core.sealing: S3 credentials travel through Prefect only as Fernet ciphertext, bound to
their task and S3 host."""

from __future__ import annotations

import json
import uuid

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from core.sealing import Credentials, Sealer, SealingError, new_key

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CREDENTIALS = Credentials(access_key_id="AKIAEXAMPLE", secret_access_key=SECRET)
TASK = uuid.UUID("59e37edd-7d97-46be-9c5c-c269740c5dda")
HOST = "http://127.0.0.1:9000"


def sealer(keys: str) -> Sealer:
    return Sealer(SecretStr(keys))


def seal(box: Sealer, task: uuid.UUID = TASK, host: str = HOST) -> str:
    return box.seal(CREDENTIALS, task_id=task, s3_host=host)


def unseal(box: Sealer, token: str, task: uuid.UUID = TASK, host: str = HOST) -> Credentials:
    return box.unseal(token, task_id=task, s3_host=host)


def assert_no_secret(error: BaseException, *secrets: str) -> None:
    """Neither the message nor the repr of `error`, nor anything chained to it, shows a
    secret."""
    chained: BaseException | None = error
    while chained is not None:
        for secret in (SECRET, *secrets):
            assert secret not in str(chained)
            assert secret not in repr(chained)
        chained = chained.__cause__ or chained.__context__


def test_seal_then_unseal_gives_the_credentials_back() -> None:
    """A token sealed for (task A, host H) opens for (A, H)."""
    box = sealer(new_key())
    assert unseal(box, seal(box)) == CREDENTIALS


def test_a_trailing_slash_on_the_host_is_the_same_host() -> None:
    """The API stores the host without its trailing slash; one added by hand still opens."""
    box = sealer(new_key())
    assert unseal(box, seal(box, host=HOST + "/")) == CREDENTIALS
    assert unseal(box, seal(box), host=HOST + "/") == CREDENTIALS


def test_a_token_does_not_open_for_another_task() -> None:
    """A token sealed for task A, copied into a run of task B, is refused saying so; the
    refusal shows no secret, no key and not the token."""
    key = new_key()
    box = sealer(key)
    token = seal(box)
    other = uuid.uuid4()
    with pytest.raises(SealingError, match="sealed for another task") as caught:
        unseal(box, token, task=other)
    assert str(other) in str(caught.value)
    assert_no_secret(caught.value, key, token, "AKIAEXAMPLE")


def test_a_token_does_not_open_for_another_host() -> None:
    """A token sealed for host H, in a run naming host H2, is refused saying so; the
    refusal shows no secret."""
    key = new_key()
    box = sealer(key)
    token = seal(box)
    with pytest.raises(SealingError, match="sealed for another S3 host") as caught:
        unseal(box, token, host="http://evil.example:9000")
    assert "http://evil.example:9000" in str(caught.value)
    assert HOST not in str(caught.value)
    assert_no_secret(caught.value, key, token, "AKIAEXAMPLE")


def test_token_does_not_contain_the_secret() -> None:
    """The sealed token shows neither the secret, nor the access key id, nor its task."""
    token = seal(sealer(new_key()))
    assert SECRET not in token
    assert "AKIAEXAMPLE" not in token
    assert str(TASK) not in token
    assert token.isascii()


def test_sealing_twice_gives_different_tokens() -> None:
    """Tokens are randomised, so equal credentials are not recognisable in Prefect."""
    box = sealer(new_key())
    assert seal(box) != seal(box)


def test_unseal_with_another_key_raises_sealing_error_without_secret() -> None:
    """A token sealed with one key cannot be opened with another; the error shows no secret."""
    key = new_key()
    token = seal(sealer(key))
    other = new_key()
    with pytest.raises(SealingError) as caught:
        unseal(sealer(other), token)
    assert "SEALING_KEY" in str(caught.value)
    assert_no_secret(caught.value, key, other, token)


@pytest.mark.parametrize("token", ["", "garbage", "gAAAAA" + "A" * 80, "é"])
def test_unseal_of_garbage_raises_sealing_error(token: str) -> None:
    """A token that is not a Fernet token of this key is a SealingError naming the key."""
    with pytest.raises(SealingError, match="SEALING_KEY"):
        unseal(sealer(new_key()), token)


def test_unseal_of_a_tampered_token_raises_sealing_error() -> None:
    """Changing one character of a token makes it unopenable."""
    box = sealer(new_key())
    token = seal(box)
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    with pytest.raises(SealingError):
        unseal(box, tampered)


def test_a_token_sealed_before_the_binding_is_refused_saying_so() -> None:
    """A token of the earlier format (a bare [key id, secret] pair, bound to nothing) does
    not open: the refusal says the task must be submitted again, and shows no secret."""
    key = new_key()
    old = Fernet(key).encrypt(json.dumps(["AKIAEXAMPLE", SECRET]).encode()).decode()
    with pytest.raises(SealingError, match="not bound to a task") as caught:
        unseal(sealer(key), old)
    assert "submitted again" in str(caught.value)
    assert_no_secret(caught.value, key, old, "AKIAEXAMPLE")


@pytest.mark.parametrize(
    "payload",
    [{"task": str(TASK), "host": HOST}, {"task": str(TASK), "host": HOST, "key": 1, "secret": 2}],
)
def test_a_payload_without_credentials_is_refused(payload: dict[str, object]) -> None:
    """A token that opens and is bound right but holds no credentials is a SealingError."""
    key = new_key()
    token = Fernet(key).encrypt(json.dumps(payload).encode()).decode()
    with pytest.raises(SealingError):
        unseal(sealer(key), token)


def test_refusals_chain_nothing_that_holds_the_payload() -> None:
    """A refusal raised once the token is open carries no exception holding its payload."""
    box = sealer(new_key())
    with pytest.raises(SealingError) as caught:
        unseal(box, seal(box), task=uuid.uuid4())
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_key_rotation_opens_tokens_sealed_with_the_old_key() -> None:
    """With SEALING_KEY "new,old", tokens sealed with old still open, bound as they were."""
    old, new = new_key(), new_key()
    old_token = seal(sealer(old))
    rotated = sealer(f"{new},{old}")
    assert unseal(rotated, old_token) == CREDENTIALS
    with pytest.raises(SealingError, match="another task"):
        unseal(rotated, old_token, task=uuid.uuid4())


def test_key_rotation_seals_with_the_first_key() -> None:
    """With SEALING_KEY "new,old", new tokens open with new alone, not with old alone."""
    old, new = new_key(), new_key()
    token = seal(sealer(f"{new}, {old}"))
    assert unseal(sealer(new), token) == CREDENTIALS
    with pytest.raises(SealingError):
        unseal(sealer(old), token)


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


def test_sealer_repr_hides_the_keys() -> None:
    """repr and str of a Sealer show none of its keys."""
    keys = f"{new_key()},{new_key()}"
    box = sealer(keys)
    for key in keys.split(","):
        assert key not in repr(box)
        assert key not in str(box)


def test_new_key_is_a_usable_fresh_key() -> None:
    """new_key() gives a different valid key each call."""
    first, second = new_key(), new_key()
    assert first != second
    sealer(first)
    sealer(second)
