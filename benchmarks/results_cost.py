"""`make bench-results`: what keeping a stage's result costs, by the size of the data.

    .venv/bin/python -m benchmarks.results_cost [--sizes 0.2 100] [--repeat 5]

For each size (MB), with outputs of that size as `process` returns them, in this
process and a temporary folder (the storage of `make run`): the cache key of `process`
over inputs of that size (SHA-256 of their bytes, flows.results), Prefect writing the
result record (serialized, then written), and reading it back as a rerun's cache hit
does. It prints the median of --repeat of each, in ms. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore

from contract.description import FieldType
from flows.results import process_key
from services.base import Blob


def timed(step: Callable[[], Any], repeat: int) -> float:
    """The median wall time of `step`, in ms."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        step()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(size_mb: float, repeat: int, folder: Path) -> dict[str, float]:
    data = os.urandom(int(size_mb * 1_000_000))
    blobs = {
        "image": Blob(data, FieldType.IMAGE_PNG),
        "rotation": Blob(b"90", FieldType.TEXT_PLAIN),
    }
    store = ResultStore(result_storage=LocalFileSystem(basepath=str(folder)))
    key = process_key("image-rotate", "1", blobs)

    def write() -> None:
        record = store.create_result_record(blobs, key=key)
        store.persist_result_record(record)

    def read() -> None:
        assert asyncio.run(store.aread(key)).result == blobs

    return {
        "key": timed(lambda: process_key("image-rotate", "1", blobs), repeat),
        "write": timed(write, repeat),
        "read": timed(read, repeat),
        "stored_mb": (folder / key).stat().st_size / 1_000_000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.2, 100.0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'size':>9} | {'cache key':>10} | {'write':>10} | {'read':>10} | stored")
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="results-cost-") as folder:
            figures = measure(size, args.repeat, Path(folder))
        print(
            f"{size:>6.1f} MB | {figures['key']:>7.1f} ms | {figures['write']:>7.1f} ms | "
            f"{figures['read']:>7.1f} ms | {figures['stored_mb']:.1f} MB"
        )


if __name__ == "__main__":
    main()
