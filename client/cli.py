"""`python -m client submit --service URL FILE...`: one task, from local files to outputs;
`python -m client rerun TASK_ID --service URL`: that task's run once more, all of it."""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx

from client.callback import TERMINAL, CallbackReceiver
from client.progress import Progress
from client.service import (
    ServiceError,
    flow_run_page,
    mismatches,
    read_fields,
    schedule_again,
    status,
    submit,
    task_detail,
)
from client.storage import S3Config, StorageError, download, ensure_bucket, upload

# The local S3 that `make run` starts in development accepts any credentials; these are
# also the engine's own development MinIO's, at the same address, so either one works.
DEFAULTS = {
    "S3_ENDPOINT": "http://127.0.0.1:9000",
    "S3_REGION": "us-east-1",
    "S3_BUCKET": "engine",
    "S3_ACCESS_KEY_ID": "minio",
    "S3_SECRET_ACCESS_KEY": "minio123",
    "PREFECT_API_URL": "http://127.0.0.1:4200/api",
}
POLL_SECONDS = 0.25
# Seconds a rerun's outputs may take to show in the service's detail of the task.
RECORDED_SECONDS = 30


def _env(name: str) -> str:
    return os.environ.get(name) or DEFAULTS[name]


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m client", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    sub = commands.add_parser(
        "submit",
        help="run one task on a service and download its outputs",
        description="Upload FILEs to S3, submit them as one task (paired with the service's "
        "inputs in order), follow it, and download its outputs next to the first FILE. "
        "The S3 secret is read from S3_SECRET_ACCESS_KEY only, never from a flag.",
    )
    sub.add_argument("files", nargs="+", type=Path, metavar="FILE")
    sub.add_argument("--service", required=True, help="the service's URL")
    sub.add_argument("--s3-endpoint", default=_env("S3_ENDPOINT"), help="env S3_ENDPOINT")
    sub.add_argument("--s3-region", default=_env("S3_REGION"), help="env S3_REGION")
    sub.add_argument("--s3-bucket", default=_env("S3_BUCKET"), help="env S3_BUCKET")
    sub.add_argument(
        "--s3-access-key-id", default=_env("S3_ACCESS_KEY_ID"), help="env S3_ACCESS_KEY_ID"
    )
    sub.add_argument("--prefect-api", default=_env("PREFECT_API_URL"), help="env PREFECT_API_URL")
    sub.add_argument(
        "--callback-host",
        default="127.0.0.1",
        help="address to listen on for the service's callback; the service must reach it",
    )
    sub.add_argument("--callback-port", type=int, default=0, help="0: any free port")
    sub.add_argument("--out", type=Path, help="where outputs go (default: beside the first FILE)")
    sub.add_argument("--timeout", type=float, default=600, help="seconds to wait for the end")
    again = commands.add_parser(
        "rerun",
        help="run an ended task again (its flow run, named after the task id)",
        description="Find the task's flow run, schedule it again in Prefect (as the UI's "
        "Retry does: fetch, process, upload and a fresh callback to the task's "
        "callback_url), and follow it to its end. Fix the cause of a failure first.",
    )
    again.add_argument("task_id", type=uuid.UUID, metavar="TASK_ID")
    again.add_argument("--service", required=True, help="the service's URL")
    again.add_argument("--prefect-api", default=_env("PREFECT_API_URL"), help="env PREFECT_API_URL")
    again.add_argument("--timeout", type=float, default=600, help="seconds to wait for the end")
    return top


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command; the exit status: 0 finished, 1 the task or a service failed,
    2 nothing was submitted because the files or arguments were wrong."""
    args = parser().parse_args(argv)
    out = out or sys.stdout
    if args.command == "rerun":
        try:
            with httpx.Client(base_url=args.service, timeout=10) as http:
                return _rerun(args, http, out)
        except ServiceError as error:
            print(f"failed: {error}", file=out)
            return 1
    missing = [str(path) for path in args.files if not path.is_file()]
    if missing:
        print(f"no such file: {', '.join(missing)}", file=out)
        return 2
    s3 = S3Config(
        endpoint=args.s3_endpoint,
        region=args.s3_region,
        bucket=args.s3_bucket,
        access_key_id=args.s3_access_key_id,
        secret_access_key=_env("S3_SECRET_ACCESS_KEY"),
    )
    try:
        with httpx.Client(base_url=args.service, timeout=10) as http:
            return _submit(args, s3, http, out)
    except (ServiceError, StorageError, OSError) as error:  # OSError: a port or file refused
        print(f"failed: {error}", file=out)
        return 1


def _submit(args: argparse.Namespace, s3: S3Config, http: httpx.Client, out: TextIO) -> int:
    fields = read_fields(http)
    if fields is not None:
        problems = mismatches(fields[0], [path.name for path in args.files])
        if problems:
            print("\n".join(problems), file=out)
            return 2
    if ensure_bucket(s3):
        print(f"created {s3.where()}", file=out)
    keys = upload(s3, args.files)
    task_id = str(uuid.uuid4())
    with CallbackReceiver(args.callback_host, args.callback_port) as receiver:
        submit(http, _task(s3, keys, task_id, receiver.url_for(args.callback_host, task_id)))
        print(f"task {task_id} submitted to {args.service}", file=out)
        final = _follow(http, receiver, task_id, args.timeout, out)
    code = 1
    if final is None:
        print(f"no end of task {task_id} after {args.timeout:.0f} s", file=out)
    elif final["status"] == "error":
        print(f"error: {final.get('error_message')}", file=out)
    else:
        target = args.out or args.files[0].parent
        names = [field.name for field in fields[1]] if fields else None
        for path in _download(s3, final["data_out"], names, target, args.files[0].stem):
            print(f"  {path}", file=out)
        code = 0
    page = flow_run_page(args.prefect_api, task_id)
    print(f"Prefect UI: {page or f'no flow run named {task_id} at {args.prefect_api}'}", file=out)
    return code


def _rerun(args: argparse.Namespace, http: httpx.Client, out: TextIO) -> int:
    """Schedule the task's ended run again and follow it to its end."""
    task_id = str(args.task_id)
    before = task_detail(http, task_id)
    if before is None:
        print(f"the service at {args.service} never accepted task {task_id}", file=out)
        return 2
    if before["flow_run_id"] is None or before["status"] not in TERMINAL:
        print(f"task {task_id} has not ended ({before['status']}): nothing to rerun", file=out)
        return 2
    schedule_again(args.prefect_api, str(before["flow_run_id"]))
    print(f"task {task_id} ({before['status']}) scheduled again", file=out)
    final = _follow_status(http, task_id, args.timeout, out)
    if final is None:
        print(f"no end of task {task_id} after {args.timeout:.0f} s", file=out)
        return 1
    after = _outcome(http, task_id, final)
    code = 0 if final == "finished" else 1
    if code:
        print(f"error: {after.get('error_message')}", file=out)
    else:
        for key in after.get("data_out", []):
            print(f"  {key}", file=out)
    print(f"Prefect UI: {after.get('prefect_ui')}", file=out)
    return code


def _outcome(http: httpx.Client, task_id: str, final: str) -> dict[str, Any]:
    """The task's detail once it holds the outcome: the output keys are read from the
    upload's task run, which Prefect records from the worker's events a moment after the
    run ends (at most RECORDED_SECONDS later, or the keys are not shown)."""
    fields = read_fields(http)
    expected = len(fields[1]) if fields is not None else 1
    deadline = time.monotonic() + RECORDED_SECONDS
    while True:
        detail = task_detail(http, task_id) or {}
        if final != "finished" or len(detail.get("data_out", [])) >= expected:
            return detail
        if time.monotonic() > deadline:
            return detail
        time.sleep(POLL_SECONDS)  # the pace of the polls, not a wait for an event


def _follow_status(http: httpx.Client, task_id: str, timeout: float, out: TextIO) -> str | None:
    """Show the task's status until it ends (the run was scheduled again, so the first
    end seen is the new one's); that status, or None at the deadline."""
    progress = Progress(out)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            current = status(http, task_id)
            if current is not None:
                progress.show(current)
                if current in TERMINAL:
                    return current
            time.sleep(POLL_SECONDS)  # the pace of the polls, not a wait for an event
        return None
    finally:
        progress.close()


def _task(s3: S3Config, keys: list[str], task_id: str, callback_url: str) -> dict[str, Any]:
    """The body of POST /compute, as the engine sends it (CONTRACT.md §3)."""
    return {
        "s3_access_key_id": s3.access_key_id,
        "s3_secret_access_key": s3.secret_access_key,
        "s3_region": s3.region,
        "s3_host": s3.endpoint,
        "s3_bucket": s3.bucket,
        "task": {"id": task_id, "data_in": keys, "data_out": None, "status": "pending"},
        "callback_url": callback_url,
    }


def _follow(
    http: httpx.Client, receiver: CallbackReceiver, task_id: str, timeout: float, out: TextIO
) -> dict[str, Any] | None:
    """Show the task's status until its callback arrives; the callback, or None at the
    deadline."""
    progress = Progress(out)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            final = receiver.final(task_id, POLL_SECONDS)
            if final is not None:
                progress.show(final["status"])
                return final
            current = status(http, task_id)
            # The callback, not the status, says the task has ended and with what.
            if current is not None and current not in TERMINAL:
                progress.show(current)
        return None
    finally:
        progress.close()


def _download(
    s3: S3Config, keys: list[str], names: list[str] | None, target: Path, stem: str
) -> list[Path]:
    """Each output as `<first input's stem>.<output field><extension>` in `target`."""
    target.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, key in enumerate(keys):
        name = names[index] if names and index < len(names) else f"output{index + 1}"
        path = target / f"{stem}.{name}{Path(key).suffix}"
        download(s3, key, path)
        paths.append(path)
    return paths
