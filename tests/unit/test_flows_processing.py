"""flows.processing: output checks, and a service's process run in a child process."""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from contract.description import FieldDescription, FieldType
from flows.errors import PermanentError, TransientError
from flows.processing import ProcessPool, check_outputs
from services.base import Blob, load_service

FIELDS = [
    FieldDescription(name="result", type=[FieldType.IMAGE_PNG, FieldType.IMAGE_JPEG]),
    FieldDescription(name="summary", type=[FieldType.TEXT_PLAIN]),
]
PNG = Blob(b"png", FieldType.IMAGE_PNG)
TEXT = Blob(b"text", FieldType.TEXT_PLAIN)


def test_check_outputs_accepts_exactly_the_declared_fields() -> None:
    """Outputs named as the fields, each of a listed type, pass (in any order)."""
    check_outputs(FIELDS, {"summary": TEXT, "result": PNG})
    check_outputs(FIELDS, {"result": Blob(b"jpg", FieldType.IMAGE_JPEG), "summary": TEXT})


def test_check_outputs_refuses_a_missing_output() -> None:
    """A declared output that is missing is a PermanentError listing what came and what not."""
    with pytest.raises(PermanentError) as caught:
        check_outputs(FIELDS, {"result": PNG})
    assert str(caught.value) == (
        "the service returned outputs ['result'], expected ['result', 'summary']"
    )


def test_check_outputs_refuses_an_extra_output() -> None:
    """An output the description does not declare is refused."""
    with pytest.raises(PermanentError, match="'extra'"):
        check_outputs(FIELDS, {"result": PNG, "summary": TEXT, "extra": TEXT})


def test_check_outputs_refuses_a_renamed_output() -> None:
    """Right count, wrong name: refused."""
    with pytest.raises(PermanentError, match="expected \\['result', 'summary'\\]"):
        check_outputs(FIELDS, {"result": PNG, "summry": TEXT})


def test_check_outputs_refuses_an_unlisted_type() -> None:
    """An output of a type its field does not list is refused, naming field and type."""
    with pytest.raises(PermanentError) as caught:
        check_outputs(FIELDS, {"result": TEXT, "summary": TEXT})
    assert str(caught.value) == (
        "the service returned output 'result' as text/plain, which the field does not list"
    )


def png(width: int, height: int) -> bytes:
    image = Image.new("RGB", (width, height), (255, 255, 255))
    image.putpixel((0, 0), (255, 0, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_an_idle_pool_has_no_child_left_once_shut_down() -> None:
    """With no task in flight, shutdown waits for the pool's children and thread to end:
    the worker's exit then has no pool thread to race (CPython 3.11 printed an OSError,
    Bad file descriptor, when the thread closed its pipe as the interpreter exited)."""
    before = set(multiprocessing.active_children())
    pool = ProcessPool(load_service("services.image_rotate"), 1)
    asyncio.run(pool.warm())
    assert set(multiprocessing.active_children()) - before, "the pool started no child"
    pool.shutdown()
    assert not set(multiprocessing.active_children()) - before


def test_pool_rotates_in_a_child_and_converts_invalid_input() -> None:
    """image-rotate runs in the pool; InvalidInput comes back as PermanentError, same text."""
    pool = ProcessPool(load_service("services.image_rotate"), 1)

    async def scenario() -> None:
        await pool.warm()
        outputs = await pool.run(
            {
                "image": Blob(png(4, 2), FieldType.IMAGE_PNG),
                "rotation": Blob(b"90", FieldType.TEXT_PLAIN),
            }
        )
        assert set(outputs) == {"result"}
        assert outputs["result"].type is FieldType.IMAGE_PNG
        with Image.open(io.BytesIO(outputs["result"].data)) as rotated:
            assert rotated.size == (2, 4)
            # Top-left goes to top-right on a clockwise quarter turn.
            assert rotated.convert("RGB").getpixel((1, 0)) == (255, 0, 0)

        with pytest.raises(PermanentError) as caught:
            await pool.run(
                {
                    "image": Blob(png(4, 2), FieldType.IMAGE_PNG),
                    "rotation": Blob(b"45", FieldType.TEXT_PLAIN),
                }
            )
        assert type(caught.value) is PermanentError
        assert str(caught.value) == "input 'rotation': '45' is not one of 90, 180, 270"

    try:
        asyncio.run(scenario())
    finally:
        pool.shutdown()
    pool.shutdown()  # a second shutdown is harmless


THROWAWAY = """
import os

from contract.description import FieldDescription, FieldType, ServiceDescription
from flows.errors import TransientError
from services.base import Blob

DESCRIPTION = ServiceDescription(
    name="Throwaway",
    slug="throwaway",
    summary="s",
    description="d",
    data_in_fields=[FieldDescription(name="command", type=[FieldType.TEXT_PLAIN])],
    data_out_fields=[FieldDescription(name="result", type=[FieldType.TEXT_PLAIN])],
)


def process(inputs):
    command = inputs["command"].data.decode()
    if command == "pid":
        return {"result": Blob(str(os.getpid()).encode(), FieldType.TEXT_PLAIN)}
    if command == "boom":
        raise KeyError("boom")
    if command == "transient":
        raise TransientError("model server busy")
    if command == "wrong":
        return {"other": Blob(b"", FieldType.TEXT_PLAIN)}
    if command == "die":
        os._exit(3)
    raise AssertionError(command)
"""


def test_pool_runs_elsewhere_and_survives_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process runs process(); its failures come back as task errors, and a dead
    child is replaced."""
    (tmp_path / "throwaway_processing_service.py").write_text(textwrap.dedent(THROWAWAY))
    monkeypatch.syspath_prepend(str(tmp_path))
    pool = ProcessPool(load_service("throwaway_processing_service"), 1)

    def command(text: str) -> dict[str, Blob]:
        return {"command": Blob(text.encode(), FieldType.TEXT_PLAIN)}

    async def scenario() -> None:
        child = int((await pool.run(command("pid")))["result"].data)
        assert child != os.getpid()

        with pytest.raises(PermanentError) as failed:
            await pool.run(command("boom"))
        assert str(failed.value) == "the service failed: KeyError: 'boom'"

        with pytest.raises(TransientError, match="model server busy"):
            await pool.run(command("transient"))

        with pytest.raises(PermanentError, match=r"returned outputs \['other'\]"):
            await pool.run(command("wrong"))

        with pytest.raises(PermanentError, match="process died"):
            await pool.run(command("die"))

        replacement = int((await pool.run(command("pid")))["result"].data)
        assert replacement not in (child, os.getpid())

    try:
        asyncio.run(scenario())
    finally:
        pool.shutdown()


WAITER = """
import time
from pathlib import Path

from contract.description import FieldDescription, FieldType, ServiceDescription
from services.base import Blob

DESCRIPTION = ServiceDescription(
    name="Waiter",
    slug="waiter",
    summary="s",
    description="d",
    data_in_fields=[FieldDescription(name="path", type=[FieldType.TEXT_PLAIN])],
    data_out_fields=[FieldDescription(name="result", type=[FieldType.TEXT_PLAIN])],
)


def process(inputs):
    # Busy until the file appears: it stands for CPU-bound work that takes a while.
    path = Path(inputs["path"].data.decode())
    deadline = time.monotonic() + 30
    while not path.exists():
        if time.monotonic() > deadline:
            return {"result": Blob(b"stalled", FieldType.TEXT_PLAIN)}
    return {"result": Blob(b"released", FieldType.TEXT_PLAIN)}
"""


def test_busy_process_does_not_stall_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While process() is busy, other coroutines of the worker keep running: here one of
    them is what ends the busy work."""
    (tmp_path / "waiter_processing_service.py").write_text(textwrap.dedent(WAITER))
    monkeypatch.syspath_prepend(str(tmp_path))
    pool = ProcessPool(load_service("waiter_processing_service"), 1)
    release = tmp_path / "release"

    async def scenario() -> bytes:
        busy = asyncio.create_task(
            pool.run({"path": Blob(str(release).encode(), FieldType.TEXT_PLAIN)})
        )
        await asyncio.sleep(0)  # let the busy work start before the other coroutine runs
        release.touch()
        return (await busy)["result"].data

    try:
        assert asyncio.run(scenario()) == b"released"
    finally:
        pool.shutdown()


def test_children_leave_when_the_worker_is_killed(tmp_path: Path) -> None:
    """A pool child whose worker process was SIGKILLed exits by itself."""
    script = tmp_path / "holder.py"
    script.write_text(
        textwrap.dedent(
            """
            import asyncio, sys
            from flows.processing import ProcessPool
            from services.base import load_service

            if __name__ == "__main__":
                pool = ProcessPool(load_service("services.image_rotate"), 1)
                asyncio.run(pool.warm())
                print(list(pool._get()._processes)[0], flush=True)
                sys.stdin.read()
            """
        )
    )
    root = Path(__file__).resolve().parents[2]
    holder = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    child = int(holder.stdout.readline())
    holder.send_signal(signal.SIGKILL)
    holder.wait()

    deadline = time.monotonic() + 20
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if Path(f"/proc/{child}").exists():  # a zombie is gone for practical purposes
        assert Path(f"/proc/{child}/stat").read_text().split()[2] == "Z"
