"""What a service module provides, and what its `process` receives and returns.

A service module has:

- `DESCRIPTION`: its `ServiceDescription`;
- `process(inputs)`: from the inputs by field name to the outputs by field name, a plain
  function or an `async def`. Either way it runs in a child process of the worker
  (flows.processing), so neither heavy work nor a blocking call stalls other tasks;
- optionally `load()` (plain or `async def`): called once in each of those child
  processes before its first task, for what is expensive to set up (a model, a client).
  The API and the worker's own process import the module only for `DESCRIPTION`, so keep
  the import cheap and put the expensive part in `load()`;
- optionally `VERSION`, a string: results of `process` are reused for the same inputs
  while it stays the same (flows.results). Without it, the version is a digest of the
  module's source, so that any change to the module processes inputs anew; set it when
  the code stays and what it loads changes (a model's weights).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
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


Outputs = Mapping[str, Blob]
Process = Callable[[Mapping[str, Blob]], Outputs | Awaitable[Outputs]]
Load = Callable[[], object]


@dataclass(frozen=True)
class Service:
    """A loaded service module: its description and its processing function."""

    module: str
    description: ServiceDescription
    process: Process
    load: Load | None = None
    # What tells this service's results from those of other code (the module's VERSION).
    version: str = ""

    def run(self, inputs: Mapping[str, Blob]) -> Outputs:
        """`process` called here, to its end whether sync or async: for tests and scripts.
        The worker runs it in its process pool instead (flows.processing)."""
        result = self.process(inputs)
        if inspect.isawaitable(result):
            return asyncio.run(_awaited(result))
        return result


async def _awaited(result: Awaitable[Outputs]) -> Outputs:
    return await result


def load_service(module_name: str) -> Service:
    """Import a service module by dotted name (`services.image_rotate`) and check its shape."""
    module: ModuleType = importlib.import_module(module_name)
    description = getattr(module, "DESCRIPTION", None)
    process = getattr(module, "process", None)
    load = getattr(module, "load", None)
    if not isinstance(description, ServiceDescription):
        raise TypeError(f"service module {module_name} has no DESCRIPTION ServiceDescription")
    if not callable(process):
        raise TypeError(f"service module {module_name} has no process function")
    if load is not None and not callable(load):
        raise TypeError(f"service module {module_name}: load is not a function")
    version = getattr(module, "VERSION", None)
    if version is None:
        version = "source-" + hashlib.sha256(inspect.getsource(module).encode()).hexdigest()[:16]
    elif not isinstance(version, str) or not version:
        raise TypeError(f"service module {module_name}: VERSION is not a non-empty string")
    return Service(
        module=module_name, description=description, process=process, load=load, version=version
    )
