"""`python -m client submit`: local files in, outputs beside them, against real servers."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import uuid
from pathlib import Path

import httpx
import pytest
from PIL import Image
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from client.progress import STAGES
from services.image_rotate import DESCRIPTION
from tests import plain_http
from tests.conftest import S3_SECRET, free_port
from tests.integration.conftest import (
    BUCKET,
    Client,
    RunningStack,
    image_bytes,
    launcher,
    run_client,
    s3_client,
    suite_s3_flags,
    wait_for,
)

pytestmark = pytest.mark.integration


def inputs(directory: Path, image: bytes) -> list[str]:
    """image-rotate's two inputs as local files: the image and the rotation."""
    (directory / "photo.png").write_bytes(image)
    (directory / "rotation.txt").write_text("90\n")
    return [str(directory / "photo.png"), str(directory / "rotation.txt")]


def stages_shown(printed: str) -> list[str]:
    return re.findall(r"^\[[#.]+\] (\w+)", printed, flags=re.MULTILINE)


def test_newcomer_path_make_run_then_submit(stack: RunningStack, tmp_path: Path) -> None:
    """`make run` in development starts a local S3 and prints its URL; the client, given
    only the service and that S3, uploads, follows the stages, downloads the rotated image
    beside the inputs and prints the Prefect page of the run; Ctrl-C stops the S3 too."""
    port, s3_port = free_port(), free_port()
    s3_url = f"http://127.0.0.1:{s3_port}"
    development = {"ENVIRONMENT": "development", "LOCAL_S3_URL": s3_url}
    with launcher(SERVICE_PORT=str(port), **development) as (process, printed):
        assert f"Local S3   {s3_url}" in printed
        code, output = run_client(
            "--service", f"http://127.0.0.1:{port}", "--s3-endpoint", s3_url,
            *inputs(tmp_path, image_bytes("PNG", (64, 32))),
        )  # fmt: skip
        assert code == 0, output
        assert f"created bucket 'engine' at {s3_url}" in output
        result = tmp_path / "photo.result.png"
        assert f"  {result}\n" in output
        with Image.open(result) as rotated:
            assert rotated.size == (32, 64)
        shown = stages_shown(output)
        assert shown[-1] == "finished"
        assert shown == sorted(shown, key=STAGES.index)
        [task_id] = re.findall(r"task (\S+) submitted", output)
        runs = plain_http.post(
            f"{stack.prefect_api}/flow_runs/filter",
            json={"flow_runs": {"name": {"any_": [task_id]}}},
        ).json()
        ui = stack.prefect_api.removesuffix("/api")
        assert f"Prefect UI: {ui}/runs/flow-run/{runs[0]['id']}\n" in output

        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
    wait_for(lambda: not _answers(s3_url), 30, "the local S3 to stop")


def _answers(url: str) -> bool:
    try:
        plain_http.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return True


def test_failed_task_prints_the_reason_and_the_run(
    client: Client, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file the service cannot read ends with exit status 1, the engine's error message
    and the Prefect page of the failed run, never the S3 secret; nothing is downloaded."""
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY", S3_SECRET)
    code, output = run_client(
        "--service", client.stack.api, *suite_s3_flags(s3_endpoint),
        *inputs(tmp_path, b"not an image"),
    )  # fmt: skip
    assert code == 1
    assert "error: input 'image': content is not a readable image/png\n" in output
    [task_id] = re.findall(r"task (\S+) submitted", output)
    ui = client.stack.prefect_api.removesuffix("/api")
    assert f"Prefect UI: {ui}/runs/flow-run/{client.flow_run_id(task_id)}\n" in output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["photo.png", "rotation.txt"]
    assert S3_SECRET not in output


def test_files_that_do_not_fit_the_service_are_not_submitted(
    client: Client, s3_endpoint: str, tmp_path: Path
) -> None:
    """A wrong count, a wrong type or a missing file: exit status 2 and the reason, before
    anything is uploaded."""
    photo, rotation = inputs(tmp_path, image_bytes("PNG"))
    service = ["--service", client.stack.api, *suite_s3_flags(s3_endpoint)]
    keys_before = _keys(s3_endpoint)

    assert run_client(*service, photo) == (
        2,
        "the service takes 2 file(s) (image, rotation), got 1\n",
    )
    assert run_client(*service, rotation, photo) == (
        2,
        "rotation.txt for input 'image': expected image/png, image/jpeg\n"
        "photo.png for input 'rotation': expected text/plain\n",
    )
    assert run_client(*service, photo, str(tmp_path / "nope.txt")) == (
        2,
        f"no such file: {tmp_path / 'nope.txt'}\n",
    )
    assert _keys(s3_endpoint) == keys_before


def _keys(s3_endpoint: str) -> list[str]:
    listing = s3_client(s3_endpoint).list_objects_v2(Bucket=BUCKET)
    return [item["Key"] for item in listing.get("Contents", [])]


def test_description_route_is_what_the_engines_are_told(client: Client) -> None:
    """GET /description answers the announcement of the service's description."""
    response = plain_http.get(f"{client.stack.api}/description")
    assert response.status_code == 200
    assert response.json() == DESCRIPTION.announcement(os.environ["SERVICE_URL"])


def echo_service(httpserver: HTTPServer, outputs: list[str] | None = None) -> str:
    """A service that does not describe itself and calls back at once, with `outputs` or
    else its inputs as its outputs; its URL."""

    def compute(request: Request) -> Response:
        body = json.loads(request.data)
        update = {"status": "finished", "data_out": outputs or body["task"]["data_in"]}
        assert plain_http.patch(body["callback_url"], json=update).status_code == 200
        return Response(json.dumps({"status": "Task added to the queue"}))

    httpserver.expect_request("/description").respond_with_data("", status=404)
    httpserver.expect_request("/compute", method="POST").respond_with_handler(compute)
    return httpserver.url_for("").rstrip("/")


def test_outputs_of_a_service_without_description_are_numbered(
    httpserver: HTTPServer, s3_endpoint: str, tmp_path: Path
) -> None:
    """From a service that does not name its outputs, they are saved as `.outputN`, in an
    `--out` directory made for them."""
    out = tmp_path / "out"
    code, output = run_client(
        "--service", echo_service(httpserver), *suite_s3_flags(s3_endpoint), "--out", str(out),
        *inputs(tmp_path, b"png bytes"),
    )  # fmt: skip
    assert code == 0, output
    assert (out / "photo.output1.png").read_bytes() == b"png bytes"
    assert (out / "photo.output2.txt").read_text() == "90\n"


def test_task_without_an_end_gives_up_at_the_timeout(
    httpserver: HTTPServer, s3_endpoint: str, tmp_path: Path
) -> None:
    """A task whose callback never comes: exit status 1 after --timeout, the last stage
    shown, and no Prefect run to point at."""
    httpserver.expect_request("/description").respond_with_data("", status=404)
    httpserver.expect_request("/compute", method="POST").respond_with_json(
        {"status": "Task added to the queue"}
    )
    # A service that cannot say at first, then says processing.
    answers = iter([Response("", status=503)])
    httpserver.expect_request(re.compile(r"/tasks/.*/status")).respond_with_handler(
        lambda _: next(answers, Response(json.dumps({"status": "processing"})))
    )
    prefect = f"http://127.0.0.1:{free_port()}/api"
    code, output = run_client(
        "--service", httpserver.url_for("").rstrip("/"), *suite_s3_flags(s3_endpoint),
        "--timeout", "1", "--prefect-api", prefect, *inputs(tmp_path, b"png bytes"),
    )  # fmt: skip
    assert code == 1
    assert stages_shown(output)[-1] == "processing"
    [task_id] = re.findall(r"task (\S+) submitted", output)
    assert f"no end of task {task_id} after 1 s\n" in output
    assert f"Prefect UI: no flow run named {task_id} at {prefect}\n" in output


def test_refused_task_and_unreachable_service_exit_1(
    httpserver: HTTPServer, s3_endpoint: str, tmp_path: Path
) -> None:
    """A 503 from /compute, or no service at all: exit status 1 saying which."""
    httpserver.expect_request("/description").respond_with_data("", status=404)
    httpserver.expect_request("/compute", method="POST").respond_with_json(
        {"detail": "backlog full"}, status=503
    )
    files = inputs(tmp_path, b"png bytes")
    code, output = run_client(
        "--service", httpserver.url_for("").rstrip("/"), *suite_s3_flags(s3_endpoint), *files
    )
    assert (code, output) == (1, "failed: the service answered 503: backlog full\n")

    nowhere = f"http://127.0.0.1:{free_port()}"
    code, output = run_client("--service", nowhere, *suite_s3_flags(s3_endpoint), *files)
    assert code == 1
    assert output.startswith(f"failed: cannot reach the service at {nowhere}")


def test_callback_port_in_use_exits_1_naming_the_error(
    httpserver: HTTPServer, s3_endpoint: str, tmp_path: Path
) -> None:
    """A --callback-port something else holds: exit status 1 with the system's reason,
    and no task is submitted."""
    httpserver.expect_request("/description").respond_with_data("", status=404)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = str(holder.getsockname()[1])
        code, output = run_client(
            "--service", httpserver.url_for("").rstrip("/"), *suite_s3_flags(s3_endpoint),
            "--callback-port", taken, *inputs(tmp_path, b"png bytes"),
        )  # fmt: skip
    assert code == 1
    assert output.startswith("failed: [Errno 98] Address already in use")
    assert [request.path for request, _ in httpserver.log] == ["/description"]


def test_s3_failures_name_the_endpoint_and_bucket_never_the_secret(
    httpserver: HTTPServer, s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An S3 that does not answer, and an output missing from S3: exit status 1 saying
    what was done where, without the secret."""
    monkeypatch.setenv("S3_SECRET_ACCESS_KEY", S3_SECRET)
    files = inputs(tmp_path, b"png bytes")
    nowhere = f"http://127.0.0.1:{free_port()}"
    service = echo_service(httpserver, outputs=["missing.json"])
    code, output = run_client("--service", service, "--s3-endpoint", nowhere, *files)
    assert code == 1
    assert output.startswith(f"failed: reaching bucket 'engine' at {nowhere} failed: ")

    code, output = run_client("--service", service, *suite_s3_flags(s3_endpoint), *files)
    assert code == 1
    assert f"failed: downloading missing.json from bucket 'engine' at {s3_endpoint}" in output
    assert S3_SECRET not in output


def test_bucket_missing_in_another_region_is_created_there(
    httpserver: HTTPServer, s3_endpoint: str, tmp_path: Path
) -> None:
    """A bucket that does not exist yet is created in the region asked for, then used."""
    bucket = f"fresh-{uuid.uuid4().hex[:12]}"
    code, output = run_client(
        "--service", echo_service(httpserver), "--s3-endpoint", s3_endpoint,
        "--s3-bucket", bucket, "--s3-region", "eu-central-2", *inputs(tmp_path, b"png"),
    )  # fmt: skip
    assert code == 0, output
    assert f"created bucket '{bucket}' at {s3_endpoint}\n" in output
    location = s3_client(s3_endpoint).get_bucket_location(Bucket=bucket)
    assert location["LocationConstraint"] == "eu-central-2"
    assert (tmp_path / "photo.output1.png").read_bytes() == b"png"
