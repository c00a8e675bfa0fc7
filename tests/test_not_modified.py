"""A 304 keeps the cached response's Content-Type: it sends none. Chrome takes a 304's headers into
its cached copy, so a script revalidated with Quart's default text/html no longer runs under nosniff
(that is how /embed.js stopped working on a site's second page view). The real server is asked, since
the test client adds a Content-Type of its own."""

import httpx
import pytest

import live


@pytest.fixture(scope="module")
def server():
    server = live.start()
    yield server
    server.stop()


@pytest.mark.parametrize("path", ["/embed.js", "/widget/boot.js", "/embed/frame", "/"])
def test_a_304_sends_no_content_type(server, path):
    with httpx.Client(base_url=server.url, headers={"Accept-Encoding": "br"}) as http:
        first = http.get(path)
        assert first.status_code == 200 and first.headers["Content-Type"]
        again = http.get(path, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert "Content-Type" not in again.headers
