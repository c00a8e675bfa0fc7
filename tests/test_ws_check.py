"""/ws-check against the real server: it reproduces the socket's decision for the same request (origin,
header size, this address's socket count) and answers a credentialed fetch from any page."""

import contextlib
import time

import pytest

from live import ALLOWED, join, opened, request, start

EVIL = "https://evil.example.net"
COOKIE_12KB = "; ".join(f"c{n}=" + "x" * 3900 for n in range(3))
COOKIE_40KB = "; ".join(f"c{n}=" + "x" * 3900 for n in range(10))


@pytest.fixture(scope="module")
def server():
    process = start(env={"CHAT_WIDGET_MAX_CONNECTIONS_PER_ADDRESS": "2"})
    yield process
    process.stop()


def host(server):
    return [("Host", f"127.0.0.1:{server.port}")]


def ws_check(server, *headers, query="?origin=" + ALLOWED):
    answer = request(server, "/ws-check" + query, host(server) + list(headers))
    assert answer.status == 200, answer.body
    return answer


def test_same_origin_request_gets_the_full_answer_without_credentials(server):
    """No Origin header (a same-origin GET): ACAO *, no credentials, every field of the decision."""
    answer = ws_check(server)
    body = answer.json()
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in answer.headers
    assert body["allowed"] is True and body["accepting"] is True and body["draining"] is False
    assert body["headers_too_large"] is False and body["address_full"] is False
    assert body["header_limit"] == 32 * 1024 and body["header_count_limit"] == 128


def test_a_cross_origin_page_gets_its_origin_back_with_credentials(server):
    """An allowed page's credentialed fetch: its own origin, credentials allowed, Vary: Origin."""
    answer = ws_check(server, ("Origin", ALLOWED), query="")
    assert answer.headers["access-control-allow-origin"] == ALLOWED
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert "origin" in answer.headers["vary"].lower()
    assert answer.json()["allowed"] is True


def test_a_refused_origin_is_told_only_that(server):
    """A page on a refused origin can read the answer (credentials allowed) but learns only that its
    origin is refused: nothing about the visitor's cookies or address, as its handshake would not."""
    answer = ws_check(server, ("Origin", EVIL), ("Cookie", COOKIE_40KB), query="")
    body = answer.json()
    assert answer.headers["access-control-allow-origin"] == EVIL
    assert answer.headers["access-control-allow-credentials"] == "true"
    assert body["allowed"] is False and body["reason"]
    assert not {"headers_too_large", "header_bytes", "address_full"} & set(body)


def test_a_refused_origin_is_refused_for_its_origin_even_with_large_headers(server):
    """Headers over the limit from a refused origin: the handshake gets 403, not 431, as /ws-check tells that
    page only that its origin is refused (the origin is checked first)."""
    large = [("Cookie", COOKIE_12KB), ("X-Pad-1", COOKIE_12KB), ("X-Pad-2", COOKIE_12KB)]  # each line under the limit
    refused = request(server, "/ws?v=1", host(server) + [("Origin", EVIL), *large], websocket=True)
    allowed = request(server, "/ws?v=1", host(server) + [("Origin", ALLOWED), *large], websocket=True)
    assert refused.status == 403 and allowed.status == 431


def test_header_bytes_are_counted_as_the_socket_counts_them(server):
    """header_bytes is this request's header lines, ``Name: value\\r\\n`` each (h11 lowercases names)."""
    headers = host(server) + [("Origin", ALLOWED), ("Cookie", COOKIE_12KB), ("Connection", "close")]
    body = ws_check(server, *headers[1:3]).json()
    assert body["header_bytes"] == sum(len(name) + len(value) + 4 for name, value in headers)
    assert body["header_count"] == len(headers)


@pytest.mark.parametrize("cookie, refused", [(COOKIE_12KB, False), (COOKIE_40KB, True)])
def test_headers_too_large_reproduces_the_handshake(server, cookie, refused):
    """With the same cookies, /ws-check says headers_too_large exactly when the handshake gets 431."""
    body = ws_check(server, ("Origin", ALLOWED), ("Cookie", cookie)).json()
    handshake = request(server, "/ws?v=1", host(server) + [("Origin", ALLOWED), ("Cookie", cookie)], websocket=True)
    assert handshake.status == (431 if refused else 101)
    assert body["headers_too_large"] is refused
    assert (body["header_bytes"] > body["header_limit"]) is refused


async def test_address_full_reproduces_the_per_address_limit(server):
    """While this address holds max_connections_per_address sockets, address_full is true and a
    handshake gets 429; once one closes, both clear."""
    async with contextlib.AsyncExitStack() as stack:
        first = await stack.enter_async_context(opened(server))
        await join(first)
        assert ws_check(server).json()["address_full"] is False
        await join(await stack.enter_async_context(opened(server)))
        assert ws_check(server).json()["address_full"] is True
        assert request(server, "/ws?v=1", host(server) + [("Origin", ALLOWED)], websocket=True).status == 429
        await first.close()
        for _ in range(50):  # the server releases the slot when it sees the close
            if not ws_check(server).json()["address_full"]:
                break
            time.sleep(0.02)
        assert ws_check(server).json()["address_full"] is False
