"""Large request headers against the real server: the socket accepts what the HTTP routes accept (32 KiB
of header lines, 128 headers), and beyond, both answer 431 at once, whether the head comes whole or
in pieces."""

import pytest

from live import ALLOWED, header_lines_bytes, join, opened, request, start

LIMIT = 32 * 1024
MOST_HEADERS = 128
THREE_COOKIES = "; ".join(f"c{n}=" + "x" * 3900 for n in range(3))  # a 12 KB Cookie line


@pytest.fixture(scope="module")
def server():
    process = start()
    yield process
    process.stop()


def sized_headers(server, total, websocket):
    """Headers whose lines count exactly ``total`` bytes (the handshake's own four included), padded
    with a cookie."""
    base = [("Host", f"127.0.0.1:{server.port}"), ("Origin", ALLOWED)]
    own = request_extras(websocket)
    filler = total - header_lines_bytes(base + own + [("Cookie", "")])
    return base + [("Cookie", "c=" + "x" * (filler - 2))]


def request_extras(websocket):
    """The headers ``live.request`` adds itself."""
    if websocket:
        return [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]
    return [("Connection", "close")]


async def test_a_12kb_cookie_handshake_gets_welcome(server):
    """A page whose three 3.9 KB cookies make a 12 KB Cookie header connects and is welcomed."""
    assert len(THREE_COOKIES) > 11_700
    async with opened(server, headers={"Cookie": THREE_COOKIES}) as ws:
        welcome = await join(ws)
    assert welcome["v"] == 1


TARGETS = [pytest.param("/ws?v=1", True, 101, id="socket"), pytest.param("/healthz?v=1", False, 200, id="http")]
DELIVERY = [pytest.param(None, id="whole"), pytest.param(1024, id="in-1KiB-pieces")]


@pytest.mark.parametrize("piece", DELIVERY)
@pytest.mark.parametrize("path, websocket, accepted", TARGETS)
@pytest.mark.parametrize("total", [LIMIT, LIMIT + 1])
def test_header_bytes_limit(server, path, websocket, accepted, total, piece):
    """32 KiB of header lines pass on the socket and an HTTP route alike; one byte more gets 431 on
    both, answered and closed at once, however the head arrives."""
    headers = sized_headers(server, total, websocket)
    assert header_lines_bytes(headers + request_extras(websocket)) == total
    answer = request(server, path, headers, piece=piece, websocket=websocket)
    assert answer.status == (accepted if total <= LIMIT else 431)
    if answer.status == 431:
        assert b"header" in answer.body.lower() and answer.headers.get("connection") == "close"


@pytest.mark.parametrize("path, websocket, accepted", TARGETS)
@pytest.mark.parametrize("count", [MOST_HEADERS, MOST_HEADERS + 1])
def test_header_count_limit(server, path, websocket, accepted, count):
    """128 headers pass on the socket and an HTTP route alike; 129 get 431 on both."""
    base = [("Host", f"127.0.0.1:{server.port}"), ("Origin", ALLOWED)]
    fillers = [(f"X-Filler-{n}", "1") for n in range(count - len(base) - len(request_extras(websocket)))]
    answer = request(server, path, base + fillers, websocket=websocket)
    assert answer.status == (accepted if count <= MOST_HEADERS else 431)


@pytest.mark.parametrize("piece", DELIVERY)
@pytest.mark.parametrize("path, websocket, accepted", TARGETS)
def test_a_head_beyond_what_is_buffered_gets_431_not_400(server, path, websocket, accepted, piece):
    """A 100 KB header line (over what the server buffers of an unfinished head) still gets 431."""
    headers = [("Host", f"127.0.0.1:{server.port}"), ("Origin", ALLOWED), ("Cookie", "c=" + "x" * 100_000)]
    assert request(server, path, headers, piece=piece, websocket=websocket).status == 431


@pytest.mark.parametrize("piece", DELIVERY)
@pytest.mark.parametrize("path, websocket, accepted", TARGETS)
def test_a_long_url_does_not_use_up_the_header_budget(server, path, websocket, accepted, piece):
    """The limit counts header lines only: an 8 KB query string next to 32 KiB of headers still passes."""
    headers = sized_headers(server, LIMIT, websocket)
    answer = request(server, f"{path}&pad={'x' * 8000}", headers, piece=piece, websocket=websocket)
    assert answer.status == accepted
