"""A service's `load()` hook and `async def process`, run in the worker's process pool."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from contract.description import FieldType
from flows.errors import PermanentError
from flows.processing import ProcessPool
from services.base import Blob, load_service

HEADER = """
import asyncio
import json
import os
import time
from pathlib import Path

from contract.description import FieldDescription, FieldType, ServiceDescription
from services.base import Blob

DESCRIPTION = ServiceDescription(
    name="Hooks",
    slug="hooks",
    summary="s",
    description="d",
    data_in_fields=[FieldDescription(name="text", type=[FieldType.TEXT_PLAIN])],
    data_out_fields=[FieldDescription(name="result", type=[FieldType.APPLICATION_JSON])],
)
"""

LOADING = """
LOADS = 0


async def load():
    global LOADS
    await asyncio.sleep(0)
    LOADS += 1


async def process(inputs):
    await asyncio.sleep(0)
    facts = {
        "pid": os.getpid(),
        "loads": LOADS,
        "loop": id(asyncio.get_running_loop()),
        "text": inputs["text"].data.decode(),
    }
    return {"result": Blob(json.dumps(facts).encode(), FieldType.APPLICATION_JSON)}
"""

FAILING_LOAD = """
def load():
    raise FileNotFoundError("weights.bin")


def process(inputs):
    raise AssertionError("process ran although load failed")
"""

# Busy without awaiting until the file appears: an async service that blocks by mistake.
BLOCKING_ASYNC = """
async def process(inputs):
    path = Path(inputs["text"].data.decode())
    deadline = time.monotonic() + 30
    while not path.exists():
        if time.monotonic() > deadline:
            return {"result": Blob(b'"stalled"', FieldType.APPLICATION_JSON)}
    return {"result": Blob(b'"released"', FieldType.APPLICATION_JSON)}
"""


@pytest.fixture
def pool_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ProcessPool]]:
    """Pools over throwaway service modules, shut down after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    pools: list[ProcessPool] = []
    yield pools
    for pool in pools:
        pool.shutdown()


def start(pools: list[ProcessPool], directory: Path, name: str, source: str) -> ProcessPool:
    (directory / f"{name}.py").write_text(textwrap.dedent(HEADER + source))
    pool = ProcessPool(load_service(name), 1)
    pools.append(pool)
    return pool


def text(value: str) -> dict[str, Blob]:
    return {"text": Blob(value.encode(), FieldType.TEXT_PLAIN)}


def test_load_service_keeps_the_load_hook(pool_of: list[ProcessPool], tmp_path: Path) -> None:
    """load_service finds `load`, and importing the module does not call it."""
    start(pool_of, tmp_path, "hooks_import_only", LOADING)
    service = load_service("hooks_import_only")
    assert service.load is not None
    assert service.load.__module__ == "hooks_import_only"
    assert __import__("hooks_import_only").LOADS == 0


def test_load_that_is_not_callable_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module whose `load` is not a function is refused, naming the module."""
    monkeypatch.syspath_prepend(str(tmp_path))
    source = HEADER + "\nload = 3\n\ndef process(inputs):\n    return {}\n"
    (tmp_path / "hooks_bad_load.py").write_text(textwrap.dedent(source))
    with pytest.raises(TypeError, match="hooks_bad_load: load is not a function"):
        load_service("hooks_bad_load")


def test_async_process_runs_in_a_child_that_loaded_once(
    pool_of: list[ProcessPool], tmp_path: Path
) -> None:
    """An async process runs in a child, on one loop for the child's life, after a single
    (async) load() however many tasks that child runs."""
    pool = start(pool_of, tmp_path, "hooks_loading", LOADING)

    async def scenario() -> list[dict[str, object]]:
        await pool.warm()
        results = [await pool.run(text(f"task {n}")) for n in range(3)]
        return [json.loads(result["result"].data) for result in results]

    facts = asyncio.run(scenario())
    assert [fact["text"] for fact in facts] == ["task 0", "task 1", "task 2"]
    assert {fact["loads"] for fact in facts} == {1}
    assert len({fact["pid"] for fact in facts}) == 1
    assert facts[0]["pid"] != os.getpid()
    assert len({fact["loop"] for fact in facts}) == 1


def test_failed_load_stops_the_start_and_fails_every_task(
    pool_of: list[ProcessPool], tmp_path: Path
) -> None:
    """A load() that raises makes warm() (the worker's start) fail with the reason, and a
    task given to that child fails with it too, without calling process."""
    pool = start(pool_of, tmp_path, "hooks_failing", FAILING_LOAD)
    reason = "the service could not load: FileNotFoundError: weights.bin"

    async def scenario() -> None:
        with pytest.raises(PermanentError) as at_start:
            await pool.warm()
        assert str(at_start.value) == reason
        with pytest.raises(PermanentError) as in_task:
            await pool.run(text("anything"))
        assert str(in_task.value) == reason

    asyncio.run(scenario())


def test_blocking_async_process_leaves_the_event_loop_free(
    pool_of: list[ProcessPool], tmp_path: Path
) -> None:
    """An async process that blocks without awaiting stalls only its child: a coroutine of
    the caller's loop still runs, and is what ends the blocking work."""
    pool = start(pool_of, tmp_path, "hooks_blocking", BLOCKING_ASYNC)
    release = tmp_path / "release"

    async def scenario() -> bytes:
        busy = asyncio.create_task(pool.run(text(str(release))))
        await asyncio.sleep(0)  # let the busy work start before the other coroutine runs
        release.touch()
        return (await busy)["result"].data

    assert asyncio.run(scenario()) == b'"released"'


def test_service_run_drives_an_async_process_to_its_end(
    pool_of: list[ProcessPool], tmp_path: Path
) -> None:
    """Service.run calls an async process here, without a pool, and returns its outputs."""
    start(pool_of, tmp_path, "hooks_run_here", LOADING)
    outputs = load_service("hooks_run_here").run(text("here"))
    facts = json.loads(outputs["result"].data)
    assert facts["pid"] == os.getpid()
    assert facts["text"] == "here"


def test_worker_whose_service_cannot_load_exits_1_with_the_reason(tmp_path: Path) -> None:
    """`python -m flows` over a service whose load() raises stops at start, before it
    takes any run, with exit status 1 and the reason in its output."""
    (tmp_path / "hooks_worker_failing.py").write_text(textwrap.dedent(HEADER + FAILING_LOAD))
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "flows"],
        cwd=root,
        env={
            **os.environ,
            "SERVICE_MODULE": "hooks_worker_failing",
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)]),
            "PROCESS_POOL_SIZE": "1",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "the service could not load: FileNotFoundError: weights.bin" in done.stderr
