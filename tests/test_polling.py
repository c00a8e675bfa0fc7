"""The HTTP fallback (long-polling) against the real server over real HTTP: the same protocol, the same limits.

Servers run in subprocesses (tests/live.py): ``server`` with the defaults (polls held 25 s, so
these tests poll only when a frame is due), ``quick`` with polls held 1 s and channels dropped after
2 s without a poll (the ``poll_timeout`` fault), and one-off servers for the settings and SIGTERM.
"""

import asyncio
import json
import time

import pytest
from websockets.exceptions import InvalidStatus

import live
from live import ALLOWED, start
from poll_client import PollChannel, client, opened
from server.assets.page import widget_settings
from server.config import Config, ConfigError
from server.transport.channels import PollSocket


@pytest.fixture(scope="module")
def server():
    process = start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def quick():
    process = start(env={"CHAT_WIDGET_FAULTS": "poll_timeout=1"})
    yield process
    process.stop()


def message(id, text="When are you open?"):
    return {"type": "message", "id": id, "text": text}


async def open_connections(http):
    health = (await http.get("/healthz")).json()
    return health["checks"]["websocket:connections"][0]["observedValue"]


async def counted_connections(http, count, timeout=5.0):
    """The open connections /healthz counts, asked every 20 ms until there are ``count`` or ``timeout`` s passed."""
    deadline = time.monotonic() + timeout
    while (seen := await open_connections(http)) != count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return seen


async def counted_channel(http):
    """A joined channel, checked to count as one more open connection; and the count before it."""
    before = await open_connections(http)
    channel = PollChannel(http, ALLOWED)
    await channel.open()
    await channel.join()
    assert await open_connections(http) == before + 1
    return channel, before


async def test_open_then_hello_gets_welcome(server):
    """POST /poll opens a channel (unguessable id, poll_timeout 25, CORS for the origin); hello gets welcome."""
    async with client(server) as http:
        channel = PollChannel(http, ALLOWED)
        answer = await channel.open()
        assert answer.status_code == 200
        body = answer.json()
        assert set(body) == {"channel", "poll_timeout"} and body["poll_timeout"] == 25
        instance, _, secret = body["channel"].partition(".")  # <instance>.<random>: the owner, then the secret
        assert len(instance) == 8 and len(secret) == 24  # secrets.token_urlsafe(18)
        assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED and answer.headers["Vary"] == "Origin"
        assert answer.headers["Cache-Control"] == "no-store"
        try:
            assert (await channel.send({"type": "hello"})).status_code == 204
            poll = await channel.http.get(f"/poll/{channel.id}?from=0", headers=channel.headers)
            assert poll.headers["Cache-Control"] == "no-store" and poll.headers["Access-Control-Allow-Origin"] == ALLOWED
            welcome = poll.json()["frames"][0]
            assert poll.json()["from"] == 0 and welcome["type"] == "welcome" and welcome["v"] == 1
            assert welcome["resumed"] is False and len(welcome["session"]) >= 32
        finally:
            assert (await channel.end()).status_code == 204


async def test_message_is_acknowledged_and_answered(server):
    """A message over HTTP gets its ack (seq 1), then the consultant's reply (seq 2)."""
    async with client(server) as http, opened(http, ALLOWED) as channel:
        await channel.join()
        assert (await channel.send(message("m1"))).status_code == 204
        frames = await channel.receive_until("reply")
    assert frames[0] == {"type": "ack", "id": "m1", "seq": 1}
    assert frames[-1]["in_reply_to"] == "m1" and "Monday" in frames[-1]["text"] and frames[-1]["seq"] == 2


async def test_resume_replays_what_was_missed(server):
    """A new channel resuming with session + last_seq gets what came after last_seq, as a socket would."""
    async with client(server) as http:
        async with opened(http, ALLOWED) as first:
            session = (await first.join())["session"]
            await first.send(message("m1"))
            await first.receive_until("ack")
        async with opened(http, ALLOWED) as second:
            welcome = await second.join(session=session, last_seq=1)
            replay = await second.receive_until("reply")
    assert welcome["resumed"] is True and welcome["session"] == session
    assert replay[-1]["type"] == "reply" and replay[-1]["seq"] == 2 and replay[-1]["in_reply_to"] == "m1"
    assert all(frame["type"] != "message" for frame in replay)  # seq 1 was not asked for again


async def test_repeated_poll_gets_the_same_frames(server):
    """A poll answer lost on the way loses nothing: asking again from the same number gets the same frames."""
    async with client(server) as http, opened(http, ALLOWED) as channel:
        await channel.send({"type": "hello"})
        await channel.send({"type": "ping", "t": 7})
        first = await channel.poll(0)
        while len(first["frames"]) < 2:
            first = await channel.poll(0)
        again = await channel.poll(0)
        assert again == first and [f["type"] for f in again["frames"]] == ["welcome", "pong"]
        later = await channel.poll(1)  # the widget has the welcome now
        assert later["from"] == 1 and later["frames"] == [{"type": "pong", "t": 7}]
        gone = await http.get(f"/poll/{channel.id}?from=0", headers=channel.headers)
        assert gone.status_code == 400 and gone.json()["error"] == "invalid_from"


async def test_newer_poll_releases_the_older(server):
    """At most one poll is held per channel: of two, the older answers at once with no frames, the newer gets the pong."""
    async with client(server) as http, opened(http, ALLOWED) as channel:
        await channel.join()
        polls = {asyncio.create_task(channel.poll(1)), asyncio.create_task(channel.poll(1))}
        released, held = await asyncio.wait(polls, timeout=5, return_when=asyncio.FIRST_COMPLETED)
        assert len(released) == len(held) == 1  # whichever reached the server first
        assert released.pop().result() == {"from": 1, "frames": []}
        await channel.send({"type": "ping", "t": 1})
        assert (await asyncio.wait_for(held.pop(), 5))["frames"] == [{"type": "pong", "t": 1}]


async def test_held_poll_answers_empty_after_poll_timeout(quick):
    """With nothing to send, a poll is held for poll_timeout seconds, then answered with no frames."""
    async with client(quick) as http, opened(http, ALLOWED) as channel:
        await channel.join()
        started = time.monotonic()
        answer = await channel.poll()
        assert answer == {"from": 1, "frames": []} and 0.8 < time.monotonic() - started < 3


async def test_channel_nobody_polls_expires(quick):
    """A channel without a poll for poll_timeout + grace is gone (404) and no longer counts as a connection."""
    async with client(quick) as http:
        channel, before = await counted_channel(http)
        assert await counted_connections(http, before, timeout=6) == before  # expiry: 1 s + 1 s with the fault
        gone = await http.get(f"/poll/{channel.id}?from=1", headers=channel.headers)
        assert gone.status_code == 404 and gone.json()["error"] == "unknown_channel"
        assert gone.headers["Access-Control-Allow-Origin"] == ALLOWED  # the widget can read it and reopen
        assert await open_connections(http) == before


@pytest.mark.parametrize("origin", [None, "null", "https://evil.example.net", "https://shop.example.com.evil.net",
                                    "http://shop.example.com"])
async def test_refused_origin_cannot_open(server, origin):
    """Opening follows the socket's origin rules: refused with 403 and a reason, without CORS headers."""
    async with client(server) as http:
        answer = await PollChannel(http, origin).open()
    assert answer.status_code == 403 and answer.json()["error"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in answer.headers


async def test_another_origin_cannot_use_a_channel(server):
    """Every request on a channel from another Origin gets 403; a same-origin GET (no Origin) is allowed."""
    async with client(server) as http, opened(http, ALLOWED) as channel:
        await channel.join()
        other = {"Origin": "https://a.example.org"}
        answers = [await http.get(f"/poll/{channel.id}?from=1", headers=other),
                   await http.post(f"/poll/{channel.id}", content='{"type":"ping"}', headers=other),
                   await http.post(f"/poll/{channel.id}/close", headers=other)]
        for answer in answers:
            assert answer.status_code == 403 and answer.json()["error"] == "origin_mismatch"
            assert "Access-Control-Allow-Origin" not in answer.headers
        await channel.send({"type": "ping", "t": 3})
        same_origin = await http.get(f"/poll/{channel.id}?from=1")
        assert same_origin.json()["frames"] == [{"type": "pong", "t": 3}]


async def test_unsupported_version_is_answered_with_4001_and_no_channel(server):
    """Another protocol version: the open answers the socket's close (4001, its reason), readable, and no channel."""
    async with client(server) as http:
        answer = await PollChannel(http, ALLOWED).open("?v=2")
    assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert answer.json() == {"close": {"code": 4001, "reason": "unsupported protocol version; server speaks v1"}}


async def test_oversized_frame_gets_413_and_closes_with_1009(server):
    """A body over max_message_bytes is refused with 413 and closes the channel with 1009, as on the socket;
    until a poll collects the close a frame gets 410, afterwards the channel is gone (404)."""
    async with client(server) as http, opened(http, ALLOWED) as channel:
        await channel.join()
        answer = await channel.send(json.dumps(message("m1", "x" * 16384)))
        assert answer.status_code == 413 and answer.json()["error"] == "frame_too_large"
        late = await channel.send({"type": "ping"})
        assert late.status_code == 410 and late.json()["error"] == "channel_closed"
        assert await channel.receive_until() == []
        assert channel.close == {"code": 1009, "reason": "frame larger than 16384 bytes"}
        for gone in (await channel.send({"type": "ping"}), await http.get(f"/poll/{channel.id}?from=1")):
            assert gone.status_code == 404 and gone.json()["error"] == "unknown_channel"


async def test_bad_json_gets_invalid_json_and_channel_stays_usable(server):
    """A frame that is not JSON gets the invalid_json error frame; the channel keeps working."""
    async with client(server) as http, opened(http, ALLOWED) as channel:
        await channel.join()
        await channel.send("{not json")
        error = (await channel.receive_until("error"))[-1]
        assert error["code"] == "invalid_json"
        await channel.send({"type": "ping", "t": 5})
        assert (await channel.receive_until("pong"))[-1] == {"type": "pong", "t": 5}


async def test_flood_is_rate_limited_then_closed_1008(server):
    """50 messages at once: the burst (10) is acked; the next 10 (they could have been on their way) and 3
    more get rate_limited with retry_after, then close 1008."""
    async with client(server) as http, opened(http, ALLOWED) as channel:
        await channel.join()
        collecting = asyncio.create_task(channel.receive_until())
        accepted = []
        for n in range(50):
            answer = await channel.send(message(f"flood-{n}", f"question {n}"))
            # closed: 410 until the poll collects the close, then 404 (the channel is gone)
            assert answer.status_code in (204, 404, 410, 429), answer.status_code
            if answer.status_code == 204:
                accepted.append(f"flood-{n}")
        frames = await asyncio.wait_for(collecting, 30)
    acked = [frame["id"] for frame in frames if frame["type"] == "ack"]
    limited = [frame for frame in frames if frame["type"] == "error"]
    assert acked == accepted[:10]
    assert [frame["id"] for frame in limited] == accepted[10:23]
    assert all(frame["code"] == "rate_limited" and frame["retry_after"] > 0 for frame in limited)
    assert channel.close["code"] == 1008


async def test_abandoned_channel_does_not_hold_up_its_session(server):
    """A channel the widget abandoned (no more polls) is dropped when its frames pile up, and the session's
    live socket keeps getting every reply at once."""
    async with client(server) as http:
        before = await open_connections(http)
        orphan = PollChannel(http, ALLOWED)
        await orphan.open()
        session = (await orphan.join())["session"]
        for n in range(PollSocket.outbox_size - 6):  # pongs nobody collects: room for 5 more frames
            assert (await orphan.send({"type": "ping", "t": n})).status_code == 204
        async with live.opened(server) as socket:
            await socket.send(json.dumps({"type": "hello", "session": session, "last_seq": 0}))
            assert (await live.receive(socket))["resumed"] is True
            for n in range(4):  # 3 frames each for every watcher: reply_start, reply_chunk, reply
                await socket.send(json.dumps(message(f"m{n}")))
            replies = []
            while len(replies) < 4:
                frame = await live.receive(socket)  # within 5 s each
                replies += [frame["in_reply_to"]] if frame["type"] == "reply" else []
            assert sorted(replies) == ["m0", "m1", "m2", "m3"]
        gone = await http.get(f"/poll/{orphan.id}?from=1", headers=orphan.headers)
        assert gone.status_code == 404 and gone.json()["error"] == "unknown_channel"
        assert await counted_connections(http, before) == before


@pytest.mark.parametrize("method, path", [("GET", "/poll/nope?from=0"), ("POST", "/poll/nope"),
                                          ("POST", "/poll/nope/close")])
async def test_unknown_channel_gets_404(server, method, path):
    """A channel id the server never gave (or already forgot) gets 404 unknown_channel."""
    async with client(server) as http:
        answer = await http.request(method, path, headers={"Origin": ALLOWED})
    assert answer.status_code == 404 and answer.json()["error"] == "unknown_channel"


async def test_closed_channel_is_forgotten_and_frees_its_slot(server):
    """POST /close ends the channel: it is gone, and it no longer counts as an open connection."""
    async with client(server) as http:
        channel, before = await counted_channel(http)
        assert (await channel.end()).status_code == 204
        assert (await http.get(f"/poll/{channel.id}?from=1")).status_code == 404
        assert await counted_connections(http, before) == before


async def test_connections_per_address_count_channels(server):
    """Channels count against max_connections_per_address (20) together with sockets: the 21st gets 429."""
    async with client(server) as http:
        channels = []
        try:
            for _ in range(20):
                channel = PollChannel(http, ALLOWED)
                assert (await channel.open()).status_code == 200
                channels.append(channel)
            refused = await PollChannel(http, ALLOWED).open()
            assert refused.status_code == 429 and refused.json()["error"] == "too_many_connections"
            assert refused.headers["Access-Control-Allow-Origin"] == ALLOWED
            with pytest.raises(InvalidStatus) as socket_refused:
                async with live.opened(server):
                    pass
            assert socket_refused.value.response.status_code == 429
            await channels.pop().end()
            again = PollChannel(http, ALLOWED)
            assert (await again.open()).status_code == 200
            channels.append(again)
        finally:
            for channel in channels:
                await channel.end()


async def test_preflight_is_answered_for_allowed_origins_only(server):
    """OPTIONS from an allowed origin: 204 with the methods and headers; from another: 403 without CORS."""
    async with client(server) as http:
        request = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        allowed = await http.options("/poll/anything", headers={"Origin": ALLOWED, **request})
        refused = await http.options("/poll", headers={"Origin": "https://evil.example.net", **request})
    assert allowed.status_code == 204 and allowed.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert allowed.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert allowed.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert refused.status_code == 403 and "Access-Control-Allow-Origin" not in refused.headers


async def test_page_tells_the_widget_where_and_when_to_fall_back(server):
    """The widget's frame settings name the fallback mode (auto by default) and the poll URL."""
    async with client(server) as http:
        html = (await http.get("/embed/frame")).text
    assert '"poll_url": "/poll"' in html and '"fallback": "auto"' in html


def test_poll_url_follows_an_absolute_socket_url():
    """With socket_url on another host, polls go to that host over http(s), like /ws-check."""
    settings = widget_settings(Config(store="memory", socket_url="wss://chat.example.com/ws", http_fallback="always"))
    assert settings["poll_url"] == "https://chat.example.com/poll" and settings["fallback"] == "always"


def test_http_fallback_setting_is_checked():
    """http_fallback accepts auto, off and always; anything else is refused naming the setting."""
    assert Config(store="memory").http_fallback == "auto"
    assert Config.from_environment({"CHAT_WIDGET_HTTP_FALLBACK": "OFF"}, store="memory").http_fallback == "off"
    with pytest.raises(ConfigError, match="http_fallback"):
        Config(store="memory", http_fallback="sometimes")


async def test_fallback_off_answers_404_everywhere():
    """http_fallback=off: every /poll route answers 404 fallback_disabled; the socket is unaffected."""
    process = start("--http-fallback", "off")
    try:
        async with client(process) as http:
            answers = [await PollChannel(http, ALLOWED).open(), await http.get("/poll/x?from=0"),
                       await http.post("/poll/x", content="{}"), await http.post("/poll/x/close")]
            html = (await http.get("/embed/frame")).text
        for answer in answers:
            assert answer.status_code == 404 and answer.json()["error"] == "fallback_disabled"
        assert '"fallback": "off"' in html
    finally:
        process.stop()


async def test_full_server_answers_1013_and_shutdown_closes_with_1012():
    """At max_connections an open answers the close 1013 and no channel. On SIGTERM a held poll gets 1012 at once
    and the server exits 0 without waiting for a channel nobody polls."""
    process = start(env={"CHAT_WIDGET_MAX_CONNECTIONS": "2"})
    try:
        async with client(process) as http:
            channel, orphan = PollChannel(http, ALLOWED), PollChannel(http, ALLOWED)
            for each in (channel, orphan):
                await each.open()
                await each.join()
            refused = await PollChannel(http, ALLOWED).open()
            assert refused.status_code == 200 and refused.headers["Access-Control-Allow-Origin"] == ALLOWED
            assert refused.json() == {"close": {"code": 1013, "reason": "server is full; try again later"}}
            sent = asyncio.Event()
            held = asyncio.create_task(channel.poll(sent=sent))
            await asyncio.wait_for(sent.wait(), 5)
            started = time.monotonic()
            exit_code = await asyncio.to_thread(process.terminate)
            stopped_after = time.monotonic() - started
            answer = await asyncio.wait_for(held, 5)
        assert answer == {"from": 1, "frames": [], "close": {"code": 1012, "reason": "server restarting"}}
        assert exit_code == 0 and stopped_after < 1.0, stopped_after  # was over 2 s: 1 s for the orphan, twice
    finally:
        process.stop()
