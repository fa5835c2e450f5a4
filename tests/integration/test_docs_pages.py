"""The API's documentation pages work without internet: everything they load is served
by the service itself."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest

from tests import plain_http
from tests.integration.conftest import RunningStack

pytestmark = pytest.mark.integration

# Every address a page names: in `src` and `href` attributes, and the `url: '...'` that
# Swagger UI's and ReDoc's set-up scripts load the schema from.
NAMED = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url\s*:\s*["']([^"']+)["']""")


def named_addresses(page: str) -> list[str]:
    return [attribute or script for attribute, script in NAMED.findall(page)]


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_page_and_every_asset_it_names_come_from_the_service(
    stack: RunningStack, path: str
) -> None:
    """`/docs` and `/redoc` answer 200, name no other host, and each script, style, icon
    and schema they name answers 200 from the service."""
    page = plain_http.get(f"{stack.api}{path}", timeout=10)
    assert page.status_code == 200
    addresses = named_addresses(page.text)
    assert any(address.endswith(".js") for address in addresses), addresses
    for address in addresses:
        url = urljoin(f"{stack.api}{path}", address)
        assert urlsplit(url).netloc == urlsplit(stack.api).netloc, f"{path} loads {address}"
        assert plain_http.get(url, timeout=10).status_code == 200, url


def test_the_root_leads_to_the_docs_page(stack: RunningStack) -> None:
    """`GET /` redirects to `/docs`, which the engine's users open first."""
    response = plain_http.get(f"{stack.api}/", timeout=10, follow_redirects=True)
    assert response.status_code == 200
    assert response.url.path == "/docs"
    assert "swagger-ui" in response.text
