"""contract.description: field types, extensions and the announcement (CONTRACT.md §5)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from contract.description import (
    ACRONYMS,
    FieldDescription,
    FieldType,
    ServiceDescription,
    Tag,
    extension_of,
    type_of_key,
)

# CONTRACT.md §5, verbatim.
ANNOUNCEMENT = """
{"name": "Image Rotate", "slug": "image-rotate", "url": "http://127.0.0.1:9090",
 "summary": "Rotates an image", "description": "Rotates an image by 90, 180 or 270 degrees.",
 "status": "available",
 "data_in_fields": [{"name": "image", "type": ["image/png", "image/jpeg"]},
                    {"name": "rotation", "type": ["text/plain"]}],
 "data_out_fields": [{"name": "result", "type": ["image/png", "image/jpeg"]}],
 "tags": [{"name": "Image Processing", "acronym": "IP"}],
 "has_ai": false, "docs_url": "https://example.org/docs/image-rotate"}
"""

UUID_KEY = "00bbd7dd-e486-487a-ae5c-2a2901622b3b"


@pytest.mark.parametrize(
    ("extension", "field_type"),
    [
        (".png", FieldType.IMAGE_PNG),
        (".jpg", FieldType.IMAGE_JPEG),
        (".jpeg", FieldType.IMAGE_JPEG),
        (".txt", FieldType.TEXT_PLAIN),
        (".csv", FieldType.TEXT_CSV),
        (".json", FieldType.APPLICATION_JSON),
        (".pdf", FieldType.APPLICATION_PDF),
        (".zip", FieldType.APPLICATION_ZIP),
        (".mp3", FieldType.AUDIO_MPEG),
        (".ogg", FieldType.AUDIO_OGG),
    ],
)
def test_type_of_key_reads_each_extension_in_any_case(
    extension: str, field_type: FieldType
) -> None:
    """Every known extension maps to its type, whatever its case."""
    assert type_of_key(UUID_KEY + extension) is field_type
    assert type_of_key(UUID_KEY + extension.upper()) is field_type
    assert type_of_key(UUID_KEY + extension.capitalize()) is field_type


@pytest.mark.parametrize(
    "key",
    [UUID_KEY, UUID_KEY + ".gif", UUID_KEY + ".png.exe", UUID_KEY + ".tar.gz", "", "png", "x.pn"],
)
def test_type_of_key_is_none_for_an_unknown_extension(key: str) -> None:
    """A key with no extension or one the engine does not know has no type."""
    assert type_of_key(key) is None


@pytest.mark.parametrize(
    ("field_type", "extension"),
    [
        (FieldType.IMAGE_PNG, ".png"),
        (FieldType.IMAGE_JPEG, ".jpg"),
        (FieldType.TEXT_PLAIN, ".txt"),
        (FieldType.TEXT_CSV, ".csv"),
        (FieldType.APPLICATION_JSON, ".json"),
        (FieldType.APPLICATION_PDF, ".pdf"),
        (FieldType.APPLICATION_ZIP, ".zip"),
        (FieldType.AUDIO_MPEG, ".mp3"),
        (FieldType.AUDIO_OGG, ".ogg"),
    ],
)
def test_extension_of_gives_the_contract_output_extension(
    field_type: FieldType, extension: str
) -> None:
    """Outputs are written under the CONTRACT.md §3 extension of their type."""
    assert extension_of(field_type) == extension


def test_extension_of_round_trips_through_type_of_key() -> None:
    """A key written with extension_of(t) reads back as t, for every type."""
    for field_type in FieldType:
        assert type_of_key(UUID_KEY + extension_of(field_type)) is field_type


def test_field_types_are_exactly_the_engine_types() -> None:
    """FieldType lists exactly the nine MIME types the engine accepts."""
    assert {t.value for t in FieldType} == {
        "image/jpeg",
        "image/png",
        "text/plain",
        "text/csv",
        "application/json",
        "application/pdf",
        "application/zip",
        "audio/mpeg",
        "audio/ogg",
    }


def test_every_tag_has_the_contract_acronym() -> None:
    """Each tag has an acronym, and a few match CONTRACT.md §5 exactly."""
    assert set(ACRONYMS) == set(Tag)
    assert ACRONYMS[Tag.GENERIC] == "GNR"
    assert ACRONYMS[Tag.IMAGE_PROCESSING] == "IP"
    assert ACRONYMS[Tag.DATA_PREPROCESSING] == "DPP"
    assert ACRONYMS[Tag.EXPLAINABLE_AI] == "XAI"
    assert len(set(ACRONYMS.values())) == len(ACRONYMS)


@pytest.mark.parametrize("name", ["my-field", "1image", "has space", ""])
def test_field_description_refuses_a_name_that_is_not_an_identifier(name: str) -> None:
    """A field name that is not a Python identifier is refused, naming it."""
    with pytest.raises(ValidationError) as caught:
        FieldDescription(name=name, type=[FieldType.TEXT_PLAIN])
    assert repr(name) in str(caught.value)
    assert "identifier" in str(caught.value)


def test_field_description_refuses_an_empty_or_unknown_type_list() -> None:
    """A field lists at least one type, and only types the engine accepts."""
    with pytest.raises(ValidationError):
        FieldDescription(name="image", type=[])
    with pytest.raises(ValidationError):
        FieldDescription.model_validate({"name": "image", "type": ["image/gif"]})


def _equivalent() -> ServiceDescription:
    return ServiceDescription(
        name="Image Rotate",
        slug="image-rotate",
        summary="Rotates an image",
        description="Rotates an image by 90, 180 or 270 degrees.",
        data_in_fields=[
            FieldDescription(name="image", type=[FieldType.IMAGE_PNG, FieldType.IMAGE_JPEG]),
            FieldDescription(name="rotation", type=[FieldType.TEXT_PLAIN]),
        ],
        data_out_fields=[
            FieldDescription(name="result", type=[FieldType.IMAGE_PNG, FieldType.IMAGE_JPEG]),
        ],
        tags=[Tag.IMAGE_PROCESSING],
        has_ai=False,
        docs_url="https://example.org/docs/image-rotate",
    )


def _without_null_format_hints(body: object) -> object:
    """The contract example omits `format_hint: null`, which the engine treats as absent."""
    if isinstance(body, dict):
        return {
            key: _without_null_format_hints(value)
            for key, value in body.items()
            if not (key == "format_hint" and value is None)
        }
    if isinstance(body, list):
        return [_without_null_format_hints(item) for item in body]
    return body


def test_announcement_is_the_contract_body() -> None:
    """announcement(url) gives the CONTRACT.md §5 body, with url, status and tag objects."""
    body = _equivalent().announcement("http://127.0.0.1:9090")
    assert _without_null_format_hints(body) == json.loads(ANNOUNCEMENT)


def test_announcement_sends_format_hint_null_and_nothing_else_extra() -> None:
    """The only keys beyond the contract example are the fields' `format_hint: null`."""
    body = _equivalent().announcement("http://127.0.0.1:9090")
    assert set(body) == set(json.loads(ANNOUNCEMENT))
    for field in body["data_in_fields"] + body["data_out_fields"]:
        assert set(field) == {"name", "type", "format_hint"}
        assert field["format_hint"] is None


def test_announcement_is_json_serialisable() -> None:
    """The announcement survives json.dumps (plain strings, not enums)."""
    body = _equivalent().announcement("http://127.0.0.1:9090")
    assert json.loads(json.dumps(body)) == body


def test_announcement_with_no_tags_sends_an_empty_list() -> None:
    """A description without tags announces `tags: []`."""
    description = _equivalent().model_copy(update={"tags": []})
    assert description.announcement("http://h:1")["tags"] == []


@pytest.mark.parametrize("slug", ["Image-Rotate", "image_rotate", "-image", "image-", "a--b", ""])
def test_service_description_refuses_a_bad_slug(slug: str) -> None:
    """A slug is lowercase words joined by single hyphens."""
    with pytest.raises(ValidationError):
        ServiceDescription.model_validate({**_equivalent().model_dump(), "slug": slug})
