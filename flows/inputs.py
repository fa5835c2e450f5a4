"""Checking a task's inputs against the service's fields before anything is fetched."""

from __future__ import annotations

from dataclasses import dataclass

from contract.description import FieldDescription, FieldType, type_of_key
from flows.errors import PermanentError


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
