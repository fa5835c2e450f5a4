"""`make screenshots`: the pictures of the Prefect UI in docs/images, made from a real run.

Starts the stack as `make run` does (a Prefect server on a throwaway SQLite database, the
local S3, a worker and the API, on free ports), submits a good task and a bad one (a
rotation of 45) with the client, waits until Prefect has recorded their task runs, then
opens three pages of the Prefect UI in Debian's Chromium, headless, and saves them:

    docs/images/runs.png         the runs list: one run per task, named after the task id
    docs/images/run-finished.png a finished run: its four task runs in the graph, its log
    docs/images/run-failed.png   a failed run: the stage that failed and why

Chromium is driven over its DevTools protocol: each page is captured once the text it
is expected to show is on it (the UI is a single-page app that fills itself in after
loading), not after a fixed delay. Run it again when the UI changes.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import connect
from websockets.sync.connection import Connection

from client.cli import main as client_main
from deployments.local import (
    ROOT,
    Stack,
    environment,
    free_port,
    start_api,
    start_local_s3,
    start_prefect_server,
    start_worker,
    wait_until,
)
from services.base import load_service

IMAGES = ROOT / "docs" / "images"
WIDTH, HEIGHT = 1400, 1000
# Seconds to wait for a page to show what it should, and for Prefect to record a run.
PAGE_TIMEOUT = 60.0
RECORD_TIMEOUT = 120.0


class DevTools:
    """One page of a headless Chromium, driven over the DevTools protocol."""

    def __init__(self, socket: Connection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send a command and return its result, skipping the events that come between."""
        message_id = next(self._ids)
        self._socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            answer = json.loads(self._socket.recv(timeout=PAGE_TIMEOUT))
            if answer.get("id") == message_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result

    def evaluate(self, expression: str) -> Any:
        found = self.call("Runtime.evaluate", expression=expression, awaitPromise=True)
        return found.get("result", {}).get("value")

    def capture(self, url: str, shows: list[str], path: Path) -> None:
        """Open `url`, wait until its text holds every string of `shows`, and save it."""
        self.call("Page.navigate", url=url)
        check = " && ".join(f"document.body.innerText.includes({json.dumps(s)})" for s in shows)
        wait_until(
            lambda: bool(self.evaluate(f"!!document.body && {check}")),
            PAGE_TIMEOUT,
            f"{url} to show {shows}",
            interval=0.25,
        )
        # Two frames drawn after the text is there: the graph's canvas is painted too.
        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        shot = self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        print(f"wrote {path.relative_to(ROOT)}")


@contextmanager
def chromium(profile: Path) -> Iterator[DevTools]:
    """Debian's Chromium, headless, with one page open."""
    binary = shutil.which("chromium")
    if binary is None:
        raise SystemExit("no chromium: `make screenshots` installs Debian's package")
    process = subprocess.Popen(
        [
            binary,
            "--headless",
            "--no-sandbox",  # as root, Chromium runs only without its sandbox
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            f"--window-size={WIDTH},{HEIGHT}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        wait_until(port_file.exists, PAGE_TIMEOUT, "chromium's DevTools port")
        port = port_file.read_text().split()[0]
        pages = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        [page] = [p for p in pages if p["type"] == "page"]
        with connect(page["webSocketDebuggerUrl"], max_size=None) as socket:
            tools = DevTools(socket)
            tools.call(
                "Emulation.setDeviceMetricsOverride",
                width=WIDTH,
                height=HEIGHT,
                deviceScaleFactor=1,
                mobile=False,
            )
            yield tools
    finally:
        process.terminate()
        process.wait(30)


def submit(api: str, prefect_api: str, s3: str, files: list[Path], out: Path) -> str:
    """Run one task with the client, as a person would; its task id."""
    printed = io.StringIO()
    args = ["submit", "--service", api, "--prefect-api", prefect_api, "--s3-endpoint", s3]
    client_main([*args, "--out", str(out), *map(str, files)], out=printed)
    found = re.search(r"task (\S+) submitted", printed.getvalue())
    if found is None:
        raise SystemExit(f"the client did not submit the task:\n{printed.getvalue()}")
    return found[1]


def flow_run_id(prefect_api: str, task_id: str, stages: int) -> str:
    """The task's flow run, once it has ended and `stages` of its task runs have too (the
    Prefect server records task runs from the worker's events, a moment after)."""
    found: dict[str, str] = {}

    def recorded() -> bool:
        runs = httpx.post(
            f"{prefect_api}/flow_runs/filter",
            json={"flow_runs": {"name": {"any_": [task_id]}}},
            timeout=10,
        ).json()
        if not runs or runs[0]["state_type"] not in ("COMPLETED", "FAILED"):
            return False
        found["id"] = runs[0]["id"]
        task_runs = httpx.post(
            f"{prefect_api}/task_runs/filter",
            json={"flow_runs": {"id": {"any_": [found["id"]]}}},
            timeout=10,
        ).json()
        ended = [t for t in task_runs if t["state_type"] in ("COMPLETED", "FAILED")]
        return len(ended) >= stages

    wait_until(recorded, RECORD_TIMEOUT, f"the task runs of task {task_id}", interval=0.5)
    return found["id"]


def main() -> int:
    slug = load_service("services.image_rotate").description.slug
    with tempfile.TemporaryDirectory(prefix="screenshots-") as folder:
        work = Path(folder)
        ports = {name: free_port() for name in ("prefect", "api", "s3", "metrics")}
        env = environment(
            {
                "SERVICE_MODULE": "services.image_rotate",
                "ENVIRONMENT": "development",
                "LOG_FORMAT": "text",
                "PREFECT_HOME": str(work / "prefect"),
                "PREFECT_API_URL": f"http://127.0.0.1:{ports['prefect']}/api",
                "SERVICE_PORT": str(ports["api"]),
                "SERVICE_URL": f"http://127.0.0.1:{ports['api']}",
                "LOCAL_S3_URL": f"http://127.0.0.1:{ports['s3']}",
                "WORKER_METRICS_PORT": str(ports["metrics"]),
                "INTAKE_PATH": str(work / "intake.db"),
                "ENGINE_URLS": "[]",
            }
        )
        prefect_api = env["PREFECT_API_URL"]
        ui = prefect_api.removesuffix("/api")
        with (work / "stack.log").open("ab") as log:
            stack = Stack(env, log=log)
            try:
                start_prefect_server(stack)
                s3 = start_local_s3(stack) or ""
                start_worker(stack, slug)
                start_api(stack)
                api = f"http://127.0.0.1:{ports['api']}"
                examples = ROOT / "examples"
                good = submit(
                    api, prefect_api, s3, [examples / "photo.png", examples / "rotation.txt"], work
                )
                (work / "rotation.txt").write_text("45\n")
                bad = submit(
                    api, prefect_api, s3, [examples / "photo.png", work / "rotation.txt"], work
                )
                finished = flow_run_id(prefect_api, good, stages=4)
                failed = flow_run_id(prefect_api, bad, stages=2)
                IMAGES.mkdir(parents=True, exist_ok=True)
                with chromium(work / "chromium") as page:
                    page.capture(f"{ui}/runs", [good, bad], IMAGES / "runs.png")
                    page.capture(
                        f"{ui}/runs/flow-run/{finished}",
                        [good, "Completed", "summary: finished"],
                        IMAGES / "run-finished.png",
                    )
                    page.capture(
                        f"{ui}/runs/flow-run/{failed}",
                        [bad, "Failed", "summary: error"],
                        IMAGES / "run-failed.png",
                    )
            finally:
                stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
