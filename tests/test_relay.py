"""The misbehaving relay (tests/tcp_proxy.py) does what each mode says, against the real server and a real client."""

import asyncio
import json
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError
from websockets.protocol import State
from websockets.sync.client import connect as connect_sync

from live import receive
from tcp_proxy import MODES, Relay

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))
from server_process import ServerProcess  # noqa: E402

HELLO = json.dumps({"type": "hello", "last_seq": 0})
QUIET_S = 1.5  # how long "nothing comes back" is watched


@pytest.fixture(scope="module")
def server():
    process = ServerProcess().start()
    yield process
    process.stop()


def open_socket(relay):
    # The relay's own origin: the server admits the origin its Host header names.
    return connect(relay.socket_url + "?v=1", origin=relay.url, ping_interval=None, close_timeout=1, proxy=None)


async def test_pass_mode_forwards_both_ways(server):
    """pass: the welcome and a pong come back through the relay; the upgrade is counted."""
    async with Relay(server.port) as relay, open_socket(relay) as socket:
        await socket.send(HELLO)
        assert json.loads(await socket.recv())["type"] == "welcome"
        await socket.send(json.dumps({"type": "ping", "t": 7}))
        assert await receive(socket) == {"type": "pong", "t": 7}  # beats skipped
        assert relay.upgrades == 1 and relay.withheld_bytes == 0


async def test_withhold_mode_gives_the_101_then_nothing(server):
    """withhold: the handshake completes, the server's welcome is swallowed, and the socket stays open."""
    async with Relay(server.port, mode="withhold") as relay, open_socket(relay) as socket:
        await socket.send(HELLO)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(socket.recv(), QUIET_S)
        assert socket.state is State.OPEN
        assert relay.upgrades == 1
        assert relay.withheld_bytes > 0  # the server did answer; the relay kept it


async def test_cut_mode_closes_about_cut_after_seconds_after_the_101(server):
    """cut: the connection ends without a close frame about 0.2 s after the handshake."""
    async with Relay(server.port, mode="cut") as relay, open_socket(relay) as socket:
        opened = time.monotonic()
        with pytest.raises(ConnectionClosedError) as closed:
            while True:  # frames still flow until the cut: recv() until the connection ends
                await asyncio.wait_for(socket.recv(), 3)
        elapsed = time.monotonic() - opened
        assert closed.value.rcvd is None  # a TCP close, not a WebSocket close: the browser sees 1006
        assert 0.15 <= elapsed < 0.8, elapsed
        assert relay.upgrades == 1


async def test_cut_mode_forwards_until_the_cut(server):
    """cut: before the cut the socket works both ways."""
    async with Relay(server.port, mode="cut", cut_after=1.5) as relay, open_socket(relay) as socket:
        await socket.send(HELLO)
        assert json.loads(await asyncio.wait_for(socket.recv(), 1))["type"] == "welcome"
        await asyncio.wait_for(socket.wait_closed(), 3)
        assert relay.upgrades == 1


@pytest.mark.parametrize("mode", MODES)
async def test_plain_http_passes_in_every_mode(server, mode):
    """Non-upgrade requests pass untouched in every mode: the same page and health answer as direct, the
    health over the page's connection even after a socket opened later through the relay was cut."""
    async with Relay(server.port, mode=mode, cut_after=0.05) as relay, \
            httpx.AsyncClient(trust_env=False, timeout=5) as http:
        direct = await http.get(server.url + "/")
        relayed = await http.get(relay.url + "/")
        if mode == "cut":  # the page's connection is older than a socket the relay has cut
            async with open_socket(relay) as socket:
                await asyncio.wait_for(socket.wait_closed(), 3)
        health = await http.get(relay.url + "/healthz")
    assert relayed.status_code == 200 and relayed.content == direct.content
    assert health.status_code == 200 and health.json()["status"] == "pass"
    assert relay.upgrades == (mode == "cut") and relay.accepted == 1 + (mode == "cut")  # one page connection


def test_mode_changes_from_a_sync_test_apply_to_new_then_existing_connections(server):
    """Run in a thread for sync tests: set_mode changes new connections, and open ones when asked."""
    with Relay(server.port) as relay:
        def join():
            return connect_sync(relay.socket_url + "?v=1", origin=relay.url, close_timeout=1, proxy=None)

        with join() as first:
            first.send(HELLO)
            assert json.loads(first.recv(2))["type"] == "welcome"
            relay.set_mode("withhold")
            with join() as second:
                second.send(HELLO)
                with pytest.raises(TimeoutError):
                    second.recv(QUIET_S)
            first.send(json.dumps({"type": "ping", "t": 1}))
            answer = json.loads(first.recv(2))
            while answer["type"] == "beat":  # the server's heartbeat (every 5 s) may come first
                answer = json.loads(first.recv(2))
            assert answer["type"] == "pong"  # an open connection keeps its mode
            relay.set_mode("cut", existing=True)
            started = time.monotonic()
            with pytest.raises(ConnectionClosedError):
                while True:  # a beat already on its way may come through first, then the cut
                    assert json.loads(first.recv(3))["type"] == "beat"
            assert time.monotonic() - started < 1.0
        assert relay.upgrades == 2


def test_unknown_mode_is_refused():
    """A typo in a mode fails loudly instead of silently passing."""
    with pytest.raises(ValueError, match="expected one of pass, withhold, cut"):
        Relay(1, mode="drop")
