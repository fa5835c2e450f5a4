"""flows.inputs: a run's hosts and sealed credentials checked before anything is fetched;
pairing data_in with data_in_fields by position, checking types."""

from __future__ import annotations

import uuid

import pytest
from pydantic import SecretStr

from contract.description import FieldDescription, FieldType
from core.runs import RunParameters, S3Target
from core.sealing import Credentials, Sealer, new_key
from flows.errors import PermanentError
from flows.inputs import CallbackRefused, PairedInput, admit, check_callback, pair_inputs

FIELDS = [
    FieldDescription(name="image", type=[FieldType.IMAGE_PNG, FieldType.IMAGE_JPEG]),
    FieldDescription(name="rotation", type=[FieldType.TEXT_PLAIN]),
]
IMAGE = "00bbd7dd-e486-487a-ae5c-2a2901622b3b.png"
TEXT = "cbbcc363-01d6-4b88-9b9c-a514cb798d0c.txt"


def test_pairs_keys_with_fields_by_position() -> None:
    """data_in[i] belongs to data_in_fields[i], with the type its extension says."""
    assert pair_inputs(FIELDS, [IMAGE, TEXT]) == [
        PairedInput("image", IMAGE, FieldType.IMAGE_PNG),
        PairedInput("rotation", TEXT, FieldType.TEXT_PLAIN),
    ]


def test_jpeg_extensions_in_any_case_are_accepted() -> None:
    """.JPEG and .jpg are both image/jpeg."""
    paired = pair_inputs(FIELDS, ["a.JPEG", TEXT])
    assert paired[0].type is FieldType.IMAGE_JPEG
    assert pair_inputs(FIELDS, ["a.jpg", TEXT])[0].type is FieldType.IMAGE_JPEG


def test_position_not_type_decides_the_field() -> None:
    """Keys in the wrong order are refused, not silently reordered."""
    with pytest.raises(PermanentError) as caught:
        pair_inputs(FIELDS, [TEXT, IMAGE])
    assert str(caught.value) == (
        "input 'image': type text/plain is not one of image/png, image/jpeg"
    )


@pytest.mark.parametrize("data_in", [[], [IMAGE], [IMAGE, TEXT, TEXT]])
def test_wrong_count_lists_the_field_names(data_in: list[str]) -> None:
    """Too few or too many keys: the message gives the count expected, the names and the count."""
    with pytest.raises(PermanentError) as caught:
        pair_inputs(FIELDS, data_in)
    assert str(caught.value) == f"expected 2 input(s) (image, rotation), got {len(data_in)}"


def test_wrong_type_message_is_the_contract_example() -> None:
    """The message is exactly CONTRACT.md §4's example error_message."""
    with pytest.raises(PermanentError) as caught:
        pair_inputs(FIELDS, ["cbbcc363-01d6-4b88-9b9c-a514cb798d0c.txt", TEXT])
    assert str(caught.value) == (
        "input 'image': type text/plain is not one of image/png, image/jpeg"
    )


def test_wrong_type_in_the_second_field() -> None:
    """The field named is the one at fault, with its own types."""
    with pytest.raises(PermanentError) as caught:
        pair_inputs(FIELDS, [IMAGE, "x.png"])
    assert str(caught.value) == "input 'rotation': type image/png is not one of text/plain"


@pytest.mark.parametrize("key", ["a.gif", "no-extension", "a.png.bak"])
def test_unknown_extension_names_field_key_and_types(key: str) -> None:
    """A key of no known type names the field, the key and the types expected."""
    with pytest.raises(PermanentError) as caught:
        pair_inputs(FIELDS, [key, TEXT])
    assert str(caught.value) == (
        f"input 'image': key '{key}' has no known type; expected one of image/png, image/jpeg"
    )


# The run's own checks (flows.inputs.admit), before anything is fetched.
SECRET = "s3-secret-of-the-run"
TASK = uuid.UUID("59e37edd-7d97-46be-9c5c-c269740c5dda")
S3 = "http://s3.example:9000"
ENGINE = "http://engine.example:8080"
ALLOWED = ["engine.example:8080", "s3.example"]
SEALER = Sealer(SecretStr(new_key()))


def run(
    callback_url: str = f"{ENGINE}/tasks/{TASK}",
    s3_host: str = S3,
    token: str | None = None,
    task_id: uuid.UUID = TASK,
) -> RunParameters:
    """A run's parameters, its token sealed by the API for TASK and S3 unless given."""
    sealed = SEALER.seal(Credentials("key-id", SECRET), task_id=TASK, s3_host=S3)
    return RunParameters(
        task_id=task_id,
        data_in=[IMAGE, TEXT],
        s3=S3Target(host=s3_host, region="r", bucket="b", sealed_credentials=token or sealed),
        callback_url=callback_url,
    )


def test_a_run_as_the_api_made_it_is_admitted_with_its_credentials() -> None:
    """Allowed hosts and a token sealed for the run's task and host: its credentials."""
    assert admit(run(), ALLOWED, SEALER) == Credentials("key-id", SECRET)


@pytest.mark.parametrize(
    ("callback_url", "reason"),
    [
        ("http://evil.example/tasks/1", "callback_url host evil.example is not in ALLOWED_HOSTS"),
        (
            "http://engine.example:9999/tasks/1",
            "callback_url host engine.example:9999 is not in ALLOWED_HOSTS",
        ),
        ("ftp://engine.example:8080/tasks/1", "callback_url is not an http(s) URL"),
        ("http://[::1/tasks", "callback_url is not an http(s) URL"),
    ],
)
def test_a_callback_url_outside_allowed_hosts_is_refused_naming_its_host(
    callback_url: str, reason: str
) -> None:
    """A callback_url not allowed is a CallbackRefused (permanent: never retried, and no
    callback may go there) naming the host."""
    with pytest.raises(CallbackRefused) as caught:
        admit(run(callback_url=callback_url), ALLOWED, SEALER)
    assert str(caught.value) == reason
    assert isinstance(caught.value, PermanentError)


def test_an_s3_host_outside_allowed_hosts_is_refused_naming_it() -> None:
    """An S3 host not allowed is a PermanentError naming it, not a CallbackRefused: the
    allowed engine may hear of it."""
    with pytest.raises(PermanentError) as caught:
        admit(run(s3_host="http://169.254.169.254"), ALLOWED, SEALER)
    assert str(caught.value) == "S3 host 169.254.169.254 is not in ALLOWED_HOSTS"
    assert not isinstance(caught.value, CallbackRefused)


def test_any_host_is_admitted_with_a_star() -> None:
    """ALLOWED_HOSTS ["*"] (development and test by default) admits any http(s) host,
    the token still bound to it."""
    with pytest.raises(PermanentError, match="sealed for another S3 host"):
        admit(run(callback_url="http://anywhere/x", s3_host="http://else:1"), ["*"], SEALER)


@pytest.mark.parametrize(
    ("parameters", "reason"),
    [
        (run(task_id=uuid.uuid4()), "sealed for another task"),
        (run(s3_host="http://s3.example:9001"), "sealed for another S3 host"),
        (run(token="garbage"), "cannot be opened with this SEALING_KEY"),
        (
            run(
                token=Sealer(SecretStr(new_key())).seal(
                    Credentials("k", SECRET), task_id=TASK, s3_host=S3
                )
            ),
            "cannot be opened with this SEALING_KEY",
        ),
    ],
    ids=["another-task", "another-host", "garbage", "another-key"],
)
def test_a_token_that_does_not_open_for_the_run_is_refused_without_a_secret(
    parameters: RunParameters, reason: str
) -> None:
    """A copied, altered or foreign token is a PermanentError naming the sealed
    credentials and why, chaining nothing, showing neither the secret nor the token."""
    with pytest.raises(PermanentError) as caught:
        admit(parameters, ["*"], SEALER)
    message = str(caught.value)
    assert message.startswith("sealed S3 credentials")
    assert reason in message
    assert caught.value.__cause__ is None
    for secret in (SECRET, parameters.s3.sealed_credentials):
        assert secret not in message
        assert secret not in repr(caught.value)


def test_hosts_are_checked_before_the_token_is_opened() -> None:
    """A run naming a foreign host is refused for the host, whatever its token."""
    with pytest.raises(CallbackRefused):
        admit(run(callback_url="http://evil.example/", token="garbage"), ALLOWED, SEALER)


def test_check_callback_lets_an_allowed_url_through() -> None:
    """check_callback is silent for an allowed callback_url."""
    check_callback(f"{ENGINE}/tasks/1", ALLOWED)
