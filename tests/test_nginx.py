"""A real nginx in front of the real server (tests/nginx.py): without the Upgrade headers, HTTP works, sockets fail."""

import json
import socket
import sys
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from live import receive
from nginx import Nginx, require_nginx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))
from server_process import ServerProcess  # noqa: E402


@pytest.fixture(scope="module")
def server():
    require_nginx()  # installs it when missing and allowed (make test has already)
    process = ServerProcess().start()
    yield process
    process.stop()


def open_socket(proxy):
    return connect(proxy.url.replace("http:", "ws:") + "/ws?v=1", origin=proxy.url, open_timeout=5,
                   ping_interval=None, proxy=None)


async def test_without_upgrade_headers_http_works_and_the_handshake_fails(server):
    """The common misconfiguration: /healthz answers through nginx, the WebSocket handshake gets no 101."""
    with Nginx(server.port, websocket_headers=False) as proxy:
        health = httpx.get(proxy.url + "/healthz", trust_env=False)
        with pytest.raises(InvalidStatus) as refused:
            async with open_socket(proxy):
                pass
    assert health.status_code == 200 and health.json()["status"] == "pass"
    assert health.headers["server"].startswith("nginx")  # really through nginx
    assert refused.value.response.status_code == 426  # the server got a plain GET for its socket route


async def test_with_upgrade_headers_the_socket_works(server):
    """nginx configured as its WebSocket guide says: the welcome and a pong come back through it."""
    with Nginx(server.port, websocket_headers=True) as proxy:
        async with open_socket(proxy) as chat:
            await chat.send(json.dumps({"type": "hello", "last_seq": 0}))
            assert json.loads(await chat.recv())["type"] == "welcome"
            await chat.send(json.dumps({"type": "ping", "t": 3}))
            assert await receive(chat) == {"type": "pong", "t": 3}  # beats skipped
        process, tmp = proxy.process, proxy.tmp
    assert process.poll() is not None, "nginx still running after stop()"
    assert not tmp.exists(), "nginx's temporary directory left behind"


def test_a_failed_start_reports_nginx_error_log(server):
    """A port already taken: start() raises with nginx's own explanation instead of hanging."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proxy = Nginx(server.port, port=port)
        try:
            with pytest.raises(RuntimeError, match="(?s)did not start.*Address already in use"):
                proxy.start(timeout=3)
        finally:
            proxy.stop()


@pytest.mark.parametrize("trusted", [False, True])
async def test_the_visitors_address_behind_nginx_is_read_only_from_a_trusted_proxy(trusted):
    """One socket per address allowed. Two visitors (127.0.0.21 and .22) through nginx: with nginx named
    by --trusted-proxy each is its own address (X-Forwarded-For); without, both are nginx, and the second
    is refused (429), and the log says once why. A client that reaches the server directly cannot
    choose its address by sending X-Forwarded-For itself: only a trusted proxy's header counts (untrusted,
    not even from 127.0.0.1, which uvicorn would trust by default)."""
    require_nginx()
    args = ("--trusted-proxy", "127.0.0.1") if trusted else ()
    server = ServerProcess(*args, env={"CHAT_WIDGET_MAX_CONNECTIONS_PER_ADDRESS": "1"}).start()
    try:
        with Nginx(server.port, websocket_headers=True) as proxy:
            url = proxy.url.replace("http:", "ws:") + "/ws?v=1"
            first = connect(url, origin=proxy.url, open_timeout=5, proxy=None, local_addr=("127.0.0.21", 0))
            second = connect(url, origin=proxy.url, open_timeout=5, proxy=None, local_addr=("127.0.0.22", 0))
            async with first:
                if trusted:
                    async with second as chat:
                        await chat.send(json.dumps({"type": "hello"}))
                        assert json.loads(await chat.recv())["type"] == "welcome"
                else:
                    with pytest.raises(InvalidStatus) as refused:
                        async with second:
                            pass
                    assert refused.value.response.status_code == 429
                    assert any("X-Forwarded-For ignored: no --trusted-proxy" in line for line in server.output)
            direct = server.url.replace("http:", "ws:") + "/ws?v=1"
            source = "127.0.0.23" if trusted else "127.0.0.1"
            spoofing = [connect(direct, origin=server.url, open_timeout=5, proxy=None, local_addr=(source, 0),
                                additional_headers={"X-Forwarded-For": f"203.0.113.{n}"}) for n in (1, 2)]
            async with spoofing[0]:
                with pytest.raises(InvalidStatus) as refused:
                    async with spoofing[1]:
                        pass
                assert refused.value.response.status_code == 429
    finally:
        server.stop()
