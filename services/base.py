"""What a service module provides, and what its `process` receives and returns."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType

from contract.description import FieldType, ServiceDescription


@dataclass(frozen=True)
class Blob:
    """The content of one input or output, with the type it was read or is written as."""

    data: bytes
    type: FieldType


class InvalidInput(Exception):
    """An input that the service cannot work with; the task ends with this message."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"input '{field}': {reason}")
        self.field = field
        self.reason = reason


Process = Callable[[Mapping[str, Blob]], Mapping[str, Blob]]


@dataclass(frozen=True)
class Service:
    """A loaded service module: its description and its processing function."""

    module: str
    description: ServiceDescription
    process: Process


def load_service(module_name: str) -> Service:
    """Import a service module by dotted name (`services.image_rotate`) and check its shape."""
    module: ModuleType = importlib.import_module(module_name)
    description = getattr(module, "DESCRIPTION", None)
    process = getattr(module, "process", None)
    if not isinstance(description, ServiceDescription):
        raise TypeError(f"service module {module_name} has no DESCRIPTION ServiceDescription")
    if not callable(process):
        raise TypeError(f"service module {module_name} has no process function")
    return Service(module=module_name, description=description, process=process)
