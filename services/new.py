"""`python -m services.new my-thing` (or `make new-service NAME=my-thing`): a new service.

Writes `services/my_thing.py` (its description and a placeholder `process`), its test
`tests/unit/test_services_my_thing.py`, and a row in the README's table of services, all
from `services/templates/`. Works in a checkout of the repository.
"""

from __future__ import annotations

import argparse
import keyword
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
# The README's table of services ends with this line; new rows go just above it.
README_MARK = "<!-- make new-service adds a row above this line -->"


class ScaffoldError(Exception):
    """The name is not usable, or the files it would write exist already."""


def scaffold(slug: str, root: Path = ROOT) -> list[Path]:
    """Write the service module, its test and its README row; the paths written."""
    if not SLUG.match(slug):
        raise ScaffoldError(
            f"{slug!r} is not a slug: lowercase letters and digits in words joined by "
            "hyphens, starting with a letter (image-rotate)"
        )
    module = slug.replace("-", "_")
    if keyword.iskeyword(module):
        raise ScaffoldError(f"{module!r} is a Python keyword; choose another name")
    names = {"slug": slug, "module": module, "title": slug.replace("-", " ").title()}
    targets = {
        root / "services" / f"{module}.py": "service.py.tmpl",
        root / "tests" / "unit" / f"test_services_{module}.py": "test.py.tmpl",
    }
    existing = [str(path) for path in targets if path.exists()]
    if existing:
        raise ScaffoldError(f"already there: {', '.join(existing)}")
    readme = root / "README.md"
    text = readme.read_text()
    if README_MARK not in text:
        raise ScaffoldError(f"{readme} has no line {README_MARK!r} to add the service above")
    for path, template in targets.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template((TEMPLATES / template).read_text()).substitute(names))
    row = f"| `{slug}` | TODO: what it does | `services/{module}.py` |\n"
    readme.write_text(text.replace(README_MARK, row + README_MARK, 1))
    return [*targets, readme]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.new", description=__doc__)
    parser.add_argument("slug", help="the service's slug, e.g. my-thing")
    parser.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        written = scaffold(args.slug, args.root)
    except ScaffoldError as error:
        print(error, file=sys.stderr)
        return 1
    module = args.slug.replace("-", "_")
    print("wrote", *written, sep="\n  ")
    print(
        f"next: fill in the TODOs, then\n"
        f"  .venv/bin/python -m pytest {written[1].relative_to(args.root)}\n"
        f"  SERVICE_MODULE=services.{module} make run"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
