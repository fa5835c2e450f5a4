"""The README and the pages of docs/ link to files and pictures that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and ![alt](target), without the web's addresses.
LINK = re.compile(r"\]\(([^)\s]+)\)")


def local_links(page: Path) -> list[str]:
    targets = LINK.findall(page.read_text())
    return [t for t in targets if not re.match(r"[a-z]+://|mailto:", t)]


def anchors(page: Path) -> set[str]:
    """The anchors a forge makes of the page's headings."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_local_link_leads_somewhere(page: Path) -> None:
    """Each relative link names a file of the repository and, after `#`, one of its
    headings."""
    for link in local_links(page):
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.name} links to {link}"
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), f"{page.name} links to {link}"


def test_the_readme_is_read_in_ten_minutes() -> None:
    """The README stays short: the rest belongs in docs/."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
