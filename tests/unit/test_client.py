"""The client's pieces that need no service: its progress line and its callback endpoint."""

from __future__ import annotations

import io
import subprocess
import sys

from client.callback import CallbackReceiver
from client.progress import Progress
from deployments.local import ROOT
from tests import plain_http


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal() -> None:
    """On a terminal each stage redraws the same line (a carriage return), ended by close."""
    screen = Terminal()
    progress = Progress(screen)
    for stage in ("pending", "processing", "processing", "finished"):
        progress.show(stage)
    progress.close()
    drawn = screen.getvalue()
    assert drawn.count("\r") == 4
    assert drawn.endswith("\n")
    assert drawn.count("\n") == 1
    assert "\r[" + "." * 20 + "] pending" in drawn
    assert "\r[" + "#" * 10 + "." * 10 + "] processing" in drawn
    assert "\r[" + "#" * 20 + "] finished" in drawn


def test_progress_prints_a_line_per_stage_elsewhere() -> None:
    """Off a terminal a stage is printed once, when it is reached; error fills the bar."""
    log = io.StringIO()
    progress = Progress(log)
    for stage in ("fetching", "fetching", "saving", "error"):
        progress.show(stage)
    progress.close()
    lines = log.getvalue().splitlines()
    assert [line.split()[1] for line in lines] == ["fetching", "saving", "error"]
    assert lines[-1].startswith("[" + "#" * 20 + "]")


def test_callback_receiver_keeps_the_first_terminal_update() -> None:
    """Progress updates are taken but not kept; the first finished/error is the answer."""
    with CallbackReceiver() as receiver:
        url = receiver.url_for("127.0.0.1", "t1")
        assert url == f"http://127.0.0.1:{receiver.port}/tasks/t1"
        for status in ("processing", "finished", "error"):
            response = plain_http.patch(url, json={"status": status, "data_out": []})
            assert (response.status_code, response.json()) == (200, {})
        assert receiver.final("t1", timeout=5) == {"status": "finished", "data_out": []}
        assert receiver.final("other", timeout=0) is None


def test_callback_receiver_refuses_a_body_that_is_not_json() -> None:
    """A PATCH whose body is not a JSON object is answered 422 and ignored."""
    with CallbackReceiver() as receiver:
        url = receiver.url_for("127.0.0.1", "t2")
        assert plain_http.patch(url, content=b"not json").status_code == 422
        assert plain_http.patch(url, json=["finished"]).status_code == 422
        assert receiver.final("t2", timeout=0) is None


def test_python_m_client_without_a_command_is_a_usage_error() -> None:
    """`python -m client` alone exits 2 with the usage naming the submit command."""
    done = subprocess.run(
        [sys.executable, "-m", "client"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "submit" in done.stderr


def test_submit_help_names_the_secret_variable() -> None:
    """`submit --help` says the S3 secret comes from S3_SECRET_ACCESS_KEY, not a flag."""
    done = subprocess.run(
        [sys.executable, "-m", "client", "submit", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "S3_SECRET_ACCESS_KEY" in done.stdout
    assert "--s3-secret" not in done.stdout
