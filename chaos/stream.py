"""Engine-like tasks at a steady rate: each POST on a new connection with a 5 s timeout,
as the engine sends them, each task with an input image of its own."""

from __future__ import annotations

import http.client
import io
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from PIL import Image

from chaos.stack import ACCESS_KEY, BUCKET, ChaosStack

# What the engine gives /compute before it takes the submission for failed.
ENGINE_TIMEOUT = 5.0


@dataclass
class Submission:
    task_id: str
    sent: float  # time.monotonic()
    status: int | None = None  # None: no answer
    why: str = ""  # for anything but 200: the answer's detail, or what went wrong
    answered: float | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 200


def small_png(seed: int) -> bytes:
    """A 64x64 PNG of noise: every task's input differs, so no task finds another's result."""
    image = Image.effect_noise((64, 64), 40 + seed % 50).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class TaskStream:
    def __init__(self, stack: ChaosStack) -> None:
        self._stack = stack
        self._s3 = stack.s3_client()
        self._lock = threading.Lock()
        self.submissions: list[Submission] = []
        self._posting = ThreadPoolExecutor(max_workers=64, thread_name_prefix="post")
        self._rotation = f"{uuid.uuid4()}.txt"
        self._s3.put_object(Bucket=BUCKET, Key=self._rotation, Body=b"90")
        self._count = 0

    def body(self, task_id: str, image: str) -> dict[str, Any]:
        assert self._stack.engine_gate is not None
        assert self._stack.s3_gate is not None
        return {
            "s3_access_key_id": ACCESS_KEY,
            "s3_secret_access_key": self._stack.secret,
            "s3_region": "us-east-1",
            "s3_host": self._stack.s3_gate.url,
            "s3_bucket": BUCKET,
            "task": {
                "created_at": "2026-12-06T08:00:00.000000",
                "updated_at": "2026-12-06T08:00:00.000000",
                "data_in": [image, self._rotation],
                "data_out": None,
                "status": "pending",
                "service_id": str(uuid.uuid4()),
                "pipeline_execution_id": None,
                "pipeline_step_id": None,
                "error_message": None,
                "id": task_id,
            },
            "callback_url": f"{self._stack.engine_gate.url}/tasks/{task_id}",
        }

    def send(self) -> Submission:
        """Upload a task's image, then POST the task in the background."""
        task_id = str(uuid.uuid4())
        self._count += 1
        image = f"{task_id}.png"
        self._s3.put_object(Bucket=BUCKET, Key=image, Body=small_png(self._count))
        payload = json.dumps(self.body(task_id, image)).encode()
        submission = Submission(task_id, time.monotonic())
        with self._lock:
            self.submissions.append(submission)
        self._posting.submit(self._post, submission, payload)
        return submission

    def _post(self, submission: Submission, payload: bytes) -> None:
        host, port = "127.0.0.1", int(self._stack.env["SERVICE_PORT"])
        connection = http.client.HTTPConnection(host, port, timeout=ENGINE_TIMEOUT)
        try:
            connection.request("POST", "/compute", payload, {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            submission.status = response.status
            if response.status != 200:
                submission.why = f"{response.status} {_detail(answer)}"
        except TimeoutError:
            submission.why = "no answer within 5 s"
        except OSError as error:
            submission.why = type(error).__name__
        finally:
            connection.close()
            submission.answered = time.monotonic()

    def steady(self, rate: float, until: float, stop: threading.Event) -> None:
        """`rate` tasks a second until time.monotonic() reaches `until`, on a fixed
        schedule: a slow upload or answer does not shift the next send."""
        interval = 1 / rate
        due = time.monotonic()
        while due < until and not stop.is_set():
            self.send()
            due += interval
            stop.wait(max(0.0, due - time.monotonic()))

    def burst(self, count: int) -> None:
        for _ in range(count):
            self.send()

    def settled(self) -> bool:
        """Every POST sent has its answer (or gave up)."""
        with self._lock:
            return all(s.answered is not None for s in self.submissions)

    def close(self) -> None:
        self._posting.shutdown(wait=True)


def _detail(answer: bytes) -> str:
    try:
        detail = json.loads(answer).get("detail")
    except (ValueError, AttributeError):
        return answer[:80].decode(errors="replace")
    return str(detail)[:120]
