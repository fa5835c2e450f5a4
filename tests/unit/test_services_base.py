"""services.base: loading a service module and checking its shape."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.description import FieldType
from services import image_rotate
from services.base import Blob, InvalidInput, load_service

DESCRIPTION_SOURCE = """
from contract.description import FieldDescription, FieldType, ServiceDescription

DESCRIPTION = ServiceDescription(
    name="Throwaway",
    slug="throwaway",
    summary="s",
    description="d",
    data_in_fields=[FieldDescription(name="text", type=[FieldType.TEXT_PLAIN])],
    data_out_fields=[FieldDescription(name="result", type=[FieldType.TEXT_PLAIN])],
)
"""

PROCESS_SOURCE = """
def process(inputs):
    return dict(inputs)
"""


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for throwaway modules, forgotten again afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("throwaway_"):
            del sys.modules[name]


def write_module(directory: Path, name: str, source: str) -> str:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


def test_load_service_image_rotate() -> None:
    """load_service gives the module's name, DESCRIPTION and process."""
    service = load_service("services.image_rotate")
    assert service.module == "services.image_rotate"
    assert service.description is image_rotate.DESCRIPTION
    assert service.process is image_rotate.process
    assert service.description.slug == "image-rotate"


def test_load_service_of_a_throwaway_module(module_dir: Path) -> None:
    """A module with DESCRIPTION and process loads, whatever package it lives in."""
    name = write_module(module_dir, "throwaway_ok", DESCRIPTION_SOURCE + PROCESS_SOURCE)
    service = load_service(name)
    assert service.description.slug == "throwaway"
    blob = Blob(b"hi", FieldType.TEXT_PLAIN)
    assert service.process({"text": blob}) == {"text": blob}


def test_version_is_the_modules_or_a_digest_of_its_source(module_dir: Path) -> None:
    """VERSION when the module sets it; else a digest of the source, which any edit
    changes (so kept results of other code are not reused: flows.results)."""
    source = DESCRIPTION_SOURCE + PROCESS_SOURCE
    first = load_service(write_module(module_dir, "throwaway_v1", source)).version
    assert first.startswith("source-")
    assert load_service(write_module(module_dir, "throwaway_v2", source)).version == first
    edited = load_service(write_module(module_dir, "throwaway_v3", source + "# edited\n"))
    assert edited.version != first
    named = load_service(write_module(module_dir, "throwaway_v4", source + "VERSION = '2.1'\n"))
    assert named.version == "2.1"
    with pytest.raises(TypeError, match="VERSION"):
        load_service(write_module(module_dir, "throwaway_v5", source + "VERSION = 3\n"))


def test_module_without_description_is_a_type_error(module_dir: Path) -> None:
    """A module with no DESCRIPTION is refused, naming the module and DESCRIPTION."""
    name = write_module(module_dir, "throwaway_no_description", PROCESS_SOURCE)
    with pytest.raises(TypeError, match=r"throwaway_no_description has no DESCRIPTION"):
        load_service(name)


def test_module_whose_description_is_not_a_service_description(module_dir: Path) -> None:
    """A DESCRIPTION of the wrong type (a dict) is refused."""
    source = "DESCRIPTION = {'name': 'x'}\n" + PROCESS_SOURCE
    name = write_module(module_dir, "throwaway_dict_description", source)
    with pytest.raises(TypeError, match="DESCRIPTION"):
        load_service(name)


def test_module_without_process_is_a_type_error(module_dir: Path) -> None:
    """A module with no process function is refused, naming the module and process."""
    name = write_module(module_dir, "throwaway_no_process", DESCRIPTION_SOURCE)
    with pytest.raises(TypeError, match=r"throwaway_no_process has no process"):
        load_service(name)


def test_module_whose_process_is_not_callable(module_dir: Path) -> None:
    """A `process` that is not callable is refused."""
    name = write_module(module_dir, "throwaway_process_value", DESCRIPTION_SOURCE + "process = 3\n")
    with pytest.raises(TypeError, match="process"):
        load_service(name)


def test_missing_module_is_an_import_error() -> None:
    """A module name that does not exist fails to import."""
    with pytest.raises(ModuleNotFoundError):
        load_service("services.does_not_exist")


def test_invalid_input_message_names_the_field() -> None:
    """InvalidInput's message is "input '<field>': <reason>" and keeps both parts."""
    error = InvalidInput("image", "content is not a readable image/png")
    assert str(error) == "input 'image': content is not a readable image/png"
    assert error.field == "image"
    assert error.reason == "content is not a readable image/png"
