"""flows.inputs: pairing data_in with data_in_fields by position, checking types."""

from __future__ import annotations

import pytest

from contract.description import FieldDescription, FieldType
from flows.errors import PermanentError
from flows.inputs import PairedInput, pair_inputs

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
