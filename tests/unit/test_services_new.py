"""services.new: a scaffolded service loads, passes its own test and lints clean."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.new import README_MARK, ROOT, main, scaffold

BIN = Path(sys.executable).parent


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the parts of the repository a service needs, with the real README."""
    for package in ("services", "contract"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    return tmp_path


def run_in(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Without coverage's variables: the copy's modules are not the ones the suite measures.
    env = {key: value for key, value in os.environ.items() if not key.startswith("COVERAGE_")}
    return subprocess.run(args, cwd=directory, env=env, capture_output=True, text=True, timeout=120)


def test_scaffolded_service_loads_and_its_test_passes(checkout: Path) -> None:
    """`my-thing` gives services/my_thing.py, which load_service accepts, and a test of
    it that passes; both pass ruff's lint and format checks with the project's settings."""
    written = scaffold("my-thing", checkout)
    module = checkout / "services" / "my_thing.py"
    test = checkout / "tests" / "unit" / "test_services_my_thing.py"
    assert written == [module, test, checkout / "README.md"]

    loaded = run_in(
        checkout,
        sys.executable,
        "-c",
        "from services.base import load_service; "
        "service = load_service('services.my_thing'); "
        "print(service.module, service.description.slug, service.description.name)",
    )
    assert loaded.stdout == "services.my_thing my-thing My Thing\n", loaded.stderr

    tested = run_in(
        checkout, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test)
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "3 passed" in tested.stdout

    config = str(ROOT / "pyproject.toml")
    for check in (["check"], ["format", "--check"]):
        linted = run_in(
            checkout, str(BIN / "ruff"), *check, "--config", config, str(module), str(test)
        )
        assert linted.returncode == 0, linted.stdout + linted.stderr


def test_readme_gets_a_row_above_the_mark(checkout: Path) -> None:
    """The README's table of services gets the new slug and module just above the mark."""
    scaffold("my-thing", checkout)
    readme = (checkout / "README.md").read_text()
    row = "| `my-thing` | TODO: what it does | `services/my_thing.py` |\n"
    assert row + README_MARK in readme
    assert readme.count(README_MARK) == 1


@pytest.mark.parametrize(
    ("slug", "reason"),
    [
        ("My_Thing", "'My_Thing' is not a slug"),
        ("2fast", "'2fast' is not a slug"),
        ("thing-", "'thing-' is not a slug"),
        ("import", "'import' is a Python keyword"),
        ("image-rotate", "already there: "),
    ],
)
def test_unusable_names_write_nothing(checkout: Path, slug: str, reason: str) -> None:
    """A name that is not a slug, is a keyword or is taken is refused, and nothing changes."""
    before = (checkout / "README.md").read_text()
    modules = sorted((checkout / "services").iterdir())
    with pytest.raises(Exception, match=f"^{reason}"):
        scaffold(slug, checkout)
    assert (checkout / "README.md").read_text() == before
    assert sorted((checkout / "services").iterdir()) == modules


def test_readme_without_the_mark_is_refused(checkout: Path) -> None:
    """A README without the table's mark is refused before any file is written."""
    (checkout / "README.md").write_text("# no table\n")
    with pytest.raises(Exception, match="has no line"):
        scaffold("my-thing", checkout)
    assert not (checkout / "services" / "my_thing.py").exists()


def test_cli_prints_what_it_wrote_and_what_next(
    checkout: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command lists the files and the next steps; a second run fails with exit 1."""
    assert main(["my-thing", "--root", str(checkout)]) == 0
    printed = capsys.readouterr().out
    assert str(checkout / "services" / "my_thing.py") in printed
    assert "SERVICE_MODULE=services.my_thing make run" in printed
    assert main(["my-thing", "--root", str(checkout)]) == 1
    assert "already there" in capsys.readouterr().err


def test_make_new_service_without_a_name_says_how() -> None:
    """`make new-service` without NAME fails, saying how to call it."""
    done = subprocess.run(
        ["make", "--no-print-directory", "new-service"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "make new-service NAME=my-thing" in done.stdout + done.stderr
