"""The server's heartbeat (server/transport/heartbeat.py): beats every joined WebSocket by itself, spread
over slots, never on an HTTP channel, and never keeps a silent client past the idle timeout."""

import asyncio
import json
import time

import pytest
from quart.testing.connections import WebsocketDisconnectError

from live import ALLOWED, join, opened, receive, start
from poll_client import client as poll_client, opened as poll_opened
from server.transport.heartbeat import BeatSlots, deliver
from server.transport.socket import ChatConnection

ORIGIN = {"Origin": ALLOWED}


# ---- BeatSlots: who is beaten when --------------------------------------------------------------

def test_sockets_are_spread_evenly_over_the_slots():
    """1,000 sockets at 5 s are 50 slots of 20, 0.1 s apart: never one burst of 1,000."""
    slots = BeatSlots(5)
    for key in range(1000):
        slots.add(key, lambda text: None)
    assert slots.count == 50 and slots.step == pytest.approx(0.1)
    sizes = [len(sends) for sends in slots.due(5.0)]
    assert sizes == [20] * 50


def test_each_socket_is_beaten_once_per_interval_and_a_late_loop_catches_up_once():
    """Called every step, a socket is due once per interval; after a loop stalled for three rounds, each
    socket is beaten once (not three times) and the rhythm goes on."""
    slots = BeatSlots(1, step=0.25)
    beats = {key: 0 for key in "abcdefg"}
    for key in beats:
        slots.add(key, key)
    for tick in range(1, 9):  # two rounds
        for sends in slots.due(tick * 0.25):
            for key in sends:
                beats[key] += 1
    assert set(beats.values()) == {2}
    stalled = [key for sends in slots.due(2.0 + 3.0) for key in sends]
    assert sorted(stalled) == sorted(beats)
    assert slots.due(5.1) == [] and len(slots.due(5.25)) == 1


def test_a_socket_that_leaves_is_beaten_no_more():
    slots = BeatSlots(1, step=0.5)
    slots.add("gone", "gone")
    slots.add("stays", "stays")
    slots.discard("gone")
    slots.discard("never added")
    assert len(slots) == 1 and [key for sends in slots.due(1.0) for key in sends] == ["stays"]


# ---- deliver: never waits ------------------------------------------------------------------------

async def test_deliver_writes_at_once_and_skips_a_socket_that_fails_or_would_wait():
    """A send that completes is written; one that raises (a closed socket) or would wait for a full write
    buffer is skipped at once, and the waiting one is abandoned, not left pending."""
    written, abandoned = [], []

    async def healthy(text):
        written.append(text)

    async def closed(text):
        raise RuntimeError("Unexpected ASGI message 'websocket.send', after sending 'websocket.close'.")

    async def full(text):
        try:
            await asyncio.get_running_loop().create_future()  # resume_writing never comes
        finally:
            abandoned.append(text)

    assert deliver(healthy, "b") is True and written == ["b"]
    assert deliver(closed, "b") is False
    assert deliver(full, "b") is False and abandoned == ["b"]


# ---- the app: beats on a joined WebSocket, the idle timeout still counts the widget's frames -------

async def test_a_silent_client_that_is_beaten_is_still_closed_by_the_idle_timeout(make_app):
    """Beats are frames *to* the widget: they never reset the idle timeout, which counts only the widget's
    frames. The client joins, sends nothing more, receives beats, and is closed with 1001."""
    app = make_app(allow_origins=[ALLOWED], heartbeat=1)

    class QuickToIdle(ChatConnection):
        idle_timeout = 2.5  # below the setting's floor, for the test's speed

    app.extensions["chat_connection_class"] = QuickToIdle
    async with app.test_app() as serving:
        async with serving.test_client().websocket("/ws", headers=ORIGIN) as socket:
            await socket.send(json.dumps({"type": "hello"}))
            welcome = json.loads(await socket.receive())
            assert welcome["heartbeat"] == {"interval": 1, "idle_timeout": 2.5}
            kinds = []
            with pytest.raises(WebsocketDisconnectError) as closed:
                while True:
                    kinds.append(json.loads(await asyncio.wait_for(socket.receive(), 5))["type"])
            assert closed.value.args[0] == 1001
            assert kinds.count("beat") >= 1 and set(kinds) == {"beat"}, kinds
        assert len(app.extensions["chat_beats"]) == 0  # it left the slots when it closed


# ---- the real server ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def beating():
    process = start(env={"CHAT_WIDGET_HEARTBEAT": "1"})
    yield process
    process.stop()


async def test_beats_arrive_every_interval_without_the_client_sending_anything(beating):
    """heartbeat=1: the welcome announces it, and beats come about every second to a client that sends
    nothing after its hello."""
    async with opened(beating) as ws:
        welcome = await join(ws)
        assert welcome["heartbeat"] == {"interval": 1, "idle_timeout": 300}
        arrivals = []
        started = time.monotonic()
        while time.monotonic() - started < 4.5:
            assert (await receive(ws, beats=True)) == {"type": "beat"}
            arrivals.append(time.monotonic())
    gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:])]
    assert len(arrivals) >= 4 and all(0.7 < gap < 1.3 for gap in gaps), gaps


async def test_an_http_channel_gets_no_heartbeat_and_no_beats(beating):
    """On the HTTP fallback each beat would cost a poll answer: its welcome has no heartbeat, and the widget
    keeps pinging."""
    async with poll_client(beating) as http, poll_opened(http, ALLOWED) as channel:
        welcome = await channel.join()
        assert "heartbeat" not in welcome
        await asyncio.sleep(1.5)
        await channel.send({"type": "ping", "t": 1})
        assert [frame["type"] for frame in await channel.receive_until("pong")] == ["pong"]


async def test_with_heartbeat_0_the_server_sends_no_beats_and_announces_none():
    """CHAT_WIDGET_HEARTBEAT=0: the welcome has no heartbeat (the widget pings every 4 s as before), and no
    beat comes."""
    process = start(env={"CHAT_WIDGET_HEARTBEAT": "0"})
    try:
        async with opened(process) as ws:
            assert "heartbeat" not in await join(ws)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ws.recv(), 1.5)
    finally:
        process.stop()


async def test_a_burst_of_queued_frames_lets_other_sockets_run():
    """Frames already queued are received without yielding to the event loop: a client that writes
    thousands of pings in one read must not hold every other socket (and the beats) until it is done."""
    from server.config import Config
    from server.conversations import Conversations, MemoryStore

    class Burst:
        """A socket whose client wrote 200 pings at once: each receive returns without waiting."""

        def __init__(self):
            self.left, self.sent = 200, []

        async def receive(self):
            if not self.left:
                raise ConnectionError("the client went away")
            self.left -= 1
            return '{"type": "ping"}'

        async def send(self, text):
            self.sent.append(text)

    others_ran = []

    async def another_socket():
        while True:
            others_ran.append(len(burst.sent))
            await asyncio.sleep(0)

    burst = Burst()
    bystander = asyncio.create_task(another_socket())
    await asyncio.sleep(0)
    connection = ChatConnection(burst, Config(store="memory"), Conversations(MemoryStore(), consultant=None), "")
    with pytest.raises(ConnectionError):
        await connection.run()
    bystander.cancel()
    assert len(burst.sent) == 200
    during = [answered for answered in others_ran if 0 < answered < 200]
    assert len(during) >= 200 // 32, others_ran  # the bystander ran again and again while the burst was answered
