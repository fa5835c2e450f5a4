"""Running a service's `process` in a pool of processes, away from the worker's event loop.

A CPU-bound `process` in the worker's own process would stall every other flow run it
executes; in a child process it stalls nothing. Each child loads the service module once
(its `initializer`) and calls the module's `load()` there, so a model that is slow to
load is loaded once per child.

An `async def process` runs in the child too, on one event loop the child keeps for its
life (so clients made in `load()` stay usable across tasks): a blocking call slipped into
an async service then stalls only its own child, never the worker's loop.
"""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing
import os
import threading
import time
from collections.abc import Awaitable, Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from contract.description import FieldDescription
from flows.errors import PermanentError, TaskError
from services.base import Blob, InvalidInput, Service, load_service

T = TypeVar("T")

_service: Service | None = None
# Why the service's load() failed in this child; every task it is given fails with it.
_load_error: str | None = None
_loop: asyncio.AbstractEventLoop | None = None


def _load(module_name: str) -> None:
    global _service, _load_error
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    _service = load_service(module_name)
    if _service.load is not None:
        try:
            _to_the_end(_service.load())
        except Exception as error:
            _load_error = f"the service could not load: {type(error).__name__}: {error}"


def _exit_with_parent(parent: int) -> None:
    """A worker killed outright cannot shut its pool down: its children leave on their own."""
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def _warm() -> None:
    """Submitting it makes the pool start a child (and load the service) before the first
    task; a service that cannot load says so here, at the worker's start."""
    if _load_error is not None:
        raise PermanentError(_load_error)


def _to_the_end(result: T | Awaitable[T]) -> T:
    """What a service's function returned, awaited on the child's loop if it is async."""
    global _loop
    if not inspect.isawaitable(result):
        return result
    if _loop is None:
        _loop = asyncio.new_event_loop()
    awaited: T = _loop.run_until_complete(result)
    return awaited


def _process(inputs: Mapping[str, Blob]) -> dict[str, Blob]:
    assert _service is not None, "child started without its service"
    _warm()
    try:
        return dict(_to_the_end(_service.process(inputs)))
    except InvalidInput as error:
        raise PermanentError(str(error)) from None
    except TaskError:
        raise
    except Exception as error:
        # An arbitrary exception may not survive pickling back to the worker.
        raise PermanentError(f"the service failed: {type(error).__name__}: {error}") from None


def check_outputs(fields: list[FieldDescription], outputs: Mapping[str, Blob]) -> None:
    """The outputs must be exactly the service's declared fields, each of a listed type."""
    expected = [field.name for field in fields]
    if sorted(outputs) != sorted(expected):
        raise PermanentError(f"the service returned outputs {sorted(outputs)}, expected {expected}")
    for field in fields:
        if outputs[field.name].type not in field.type:
            raise PermanentError(
                f"the service returned output '{field.name}' as "
                f"{outputs[field.name].type.value}, which the field does not list"
            )


class ProcessPool:
    """A lazily started pool of `size` children running one service's `process`."""

    def __init__(self, service: Service, size: int) -> None:
        self._service = service
        self._size = size
        self._executor: ProcessPoolExecutor | None = None
        # Calls of `process` in flight (not the children's start).
        self._busy = 0

    def _get(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the worker has threads (Prefect's clients) that fork
            # would copy mid-lock.
            self._executor = ProcessPoolExecutor(
                max_workers=self._size,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_load,
                initargs=(self._service.module,),
            )
        return self._executor

    async def warm(self) -> None:
        """Start every child now, so the first tasks do not pay for it."""
        loop = asyncio.get_running_loop()
        executor = self._get()
        await asyncio.gather(*(loop.run_in_executor(executor, _warm) for _ in range(self._size)))

    async def run(self, inputs: Mapping[str, Blob]) -> dict[str, Blob]:
        loop = asyncio.get_running_loop()
        self._busy += 1
        try:
            outputs = await loop.run_in_executor(self._get(), _process, dict(inputs))
        except BrokenProcessPool:
            # A child died (out of memory, a crash in native code): start afresh.
            self.shutdown()
            raise PermanentError(
                "the service's process died while processing (out of memory or a crash)"
            ) from None
        finally:
            self._busy -= 1
        check_outputs(self._service.description.data_out_fields, outputs)
        return outputs

    def shutdown(self) -> None:
        """Stop the children; wait for the pool's own thread to end unless a child is in
        the middle of a task (which may take minutes). Not waiting when it could, the
        worker's exit raced that thread's closing of its wake-up pipe (CPython 3.11's
        `_python_exit`) and printed a traceback: OSError, Bad file descriptor."""
        if self._executor is not None:
            self._executor.shutdown(wait=self._busy == 0, cancel_futures=True)
            self._executor = None
