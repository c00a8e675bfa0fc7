"""The HTTP fallback across instances without sticky sessions: a channel's requests, sent to an instance
that does not own it, are answered by its owner through Redis (server/transport/forwarding.py).

Two real servers share the session's real Redis (``redis_server``, tests/conftest.py): ``owner`` opens
the channels, ``other`` is asked about them; the tests about an instance stopping start one of their own.
Polls are held 6 s (the ``poll_timeout`` fault): longer than the forwarding's margin, so a poll
answered empty after its hold proves the asking instance waits for the owner as long as the poll lasts.
"""

import asyncio
import secrets
import time

import pytest

from live import ALLOWED
from nginx import Nginx, require_nginx
from poll_client import PollChannel, client, opened
from server.transport import forwarding
from server.transport.channels import Channels
from server_process import ServerProcess

HOLD = 6  # seconds a poll is held on these servers


def start_instance(redis_server):
    return ServerProcess("--allow-origin", ALLOWED, "--store", redis_server.url(0),
                         env={"CHAT_WIDGET_FAULTS": f"poll_timeout={HOLD}"}).start()


@pytest.fixture(scope="module")
def instances(redis_server):
    if not redis_server.running:  # a test before stopped the session's Redis
        redis_server.restart()
    redis_server.flush(0)
    started = []
    try:
        for _ in range(2):
            started.append(start_instance(redis_server))
        yield started
    finally:
        for process in started:
            process.stop()


@pytest.fixture
def owner(instances):
    return instances[0]


@pytest.fixture
def other(instances):
    return instances[1]


async def test_channel_ids_name_their_instance():
    """Ids are <instance>.<18 random bytes>; ``owner`` names another instance, never this one or a malformed name."""
    mine, theirs = Channels("aaaaaaaa"), Channels("bbbbbbbb")
    channel = mine.create(ALLOWED)
    channel.end()
    channel_id = channel.id
    instance, _, secret = channel_id.partition(".")
    assert instance == "aaaaaaaa" and len(secret) == 24
    assert mine.owner(channel_id) is None and theirs.owner(channel_id) == "aaaaaaaa"
    assert theirs.owner(secret) is None and theirs.owner("a b." + secret) is None and theirs.owner("." + secret) is None


async def test_one_process_forwards_nothing(make_app):
    """With a store of its own, an instance installs no forwarding: another instance's id is simply unknown."""
    app = make_app(allow_origins=[ALLOWED])
    assert "chat_forwarding" not in app.extensions
    assert app.extensions["chat_channels"].instance_id == app.extensions["chat_instance_id"]
    answer = await app.test_client().get(f"/poll/other000.{secrets.token_urlsafe(18)}?from=0", headers={"Origin": ALLOWED})
    assert answer.status_code == 404 and (await answer.get_json())["error"] == "unknown_channel"


def through(channel, http):
    """The same channel, spoken to through another instance's client."""
    twin = PollChannel(http, channel.origin)
    twin.id, twin.next = channel.id, channel.next
    return twin


async def test_frames_come_back_through_another_instance(owner, other):
    """hello, a message and polls sent to the other instance are answered by the owner, with its CORS headers."""
    async with client(owner) as at_owner, client(other) as at_other, opened(at_owner, ALLOWED) as channel:
        elsewhere = await at_other.post("/poll?v=1", headers={"Origin": ALLOWED})
        assert channel.id.split(".")[0] != elsewhere.json()["channel"].split(".")[0]  # ids name their instance
        await at_other.post(f"/poll/{elsewhere.json()['channel']}/close", headers={"Origin": ALLOWED})

        remote = through(channel, at_other)
        assert (await remote.join())["type"] == "welcome"
        assert (await remote.send({"type": "message", "id": "m1", "text": "When are you open?"})).status_code == 204
        kinds = [frame["type"] for frame in await remote.receive_until("reply")]
        assert kinds[0] == "ack" and kinds[-1] == "reply"
        answer = await at_other.get(f"/poll/{channel.id}", params={"from": remote.next}, headers=channel.headers,
                                    timeout=HOLD + 10)
        assert answer.status_code == 200 and answer.json() == {"from": remote.next, "frames": []}
        assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED and answer.headers["Vary"] == "Origin"
        assert answer.headers["Cache-Control"] == "no-store"
        mismatch = await at_other.get(f"/poll/{channel.id}?from=0", headers={"Origin": "https://evil.example.net"})
        assert mismatch.status_code == 403 and "Access-Control-Allow-Origin" not in mismatch.headers


async def test_poll_held_through_another_instance_gets_what_the_owner_sends(owner, other):
    """A poll held through the other instance answers as soon as the owner has a frame to send."""
    async with client(owner) as at_owner, client(other) as at_other, opened(at_owner, ALLOWED) as channel:
        await channel.join()
        remote = through(channel, at_other)
        sent = asyncio.Event()
        held = asyncio.create_task(remote.poll(sent=sent))
        await sent.wait()
        await asyncio.sleep(0.3)  # the poll is on its way to the owner, held there
        started = time.monotonic()
        assert (await channel.send({"type": "ping", "t": 7})).status_code == 204
        answer = await held
        assert time.monotonic() - started < 1.0
        assert answer["frames"] == [{"type": "pong", "t": 7}]


async def test_large_frames_and_refusals_are_the_owners(owner, other):
    """A frame over the limit sent through the other instance gets the owner's 413, and the owner closes with 1009."""
    async with client(owner) as at_owner, client(other) as at_other, opened(at_owner, ALLOWED) as channel:
        await channel.join()
        remote = through(channel, at_other)
        too_large = await remote.send("x" * (16 * 1024 + 1))
        assert too_large.status_code == 413 and too_large.json()["error"] == "frame_too_large"
        assert too_large.headers["Access-Control-Allow-Origin"] == ALLOWED
        assert (await remote.poll())["close"]["code"] == 1009


async def test_forged_instance_answers_404_at_once(other):
    """A channel id naming an instance that does not exist gets 404 unknown_channel without waiting."""
    async with client(other) as http:
        for instance in ("nobody00", "not an instance"):
            started = time.monotonic()
            answer = await http.get(f"/poll/{instance}.{secrets.token_urlsafe(18)}?from=0", headers={"Origin": ALLOWED})
            assert time.monotonic() - started < 0.5
            assert answer.status_code == 404 and answer.json()["error"] == "unknown_channel"
            assert answer.headers["Access-Control-Allow-Origin"] == ALLOWED


async def test_channel_of_a_killed_owner_answers_404_through_another(redis_server, other):
    """The owner SIGKILLed: a poll held through another instance, then every request, gets 404 unknown_channel."""
    doomed = start_instance(redis_server)
    try:
        async with client(doomed) as at_doomed, client(other) as at_other:
            channel = PollChannel(at_doomed, ALLOWED)
            await channel.open()
            await channel.join()
            remote = through(channel, at_other)
            held = asyncio.create_task(at_other.get(f"/poll/{channel.id}", params={"from": channel.next},
                                                    headers=channel.headers))
            await asyncio.sleep(0.3)
            doomed.kill()
            killed = time.monotonic()
            answer = await held
            assert answer.status_code == 404 and answer.json()["error"] == "unknown_channel"
            assert time.monotonic() - killed < forwarding.ALIVE_TTL + forwarding.REFRESH_EVERY + 1
            started = time.monotonic()
            again = await remote.send({"type": "ping"})
            assert again.status_code == 404 and time.monotonic() - started < 0.5
    finally:
        doomed.stop()


async def test_owner_stopping_closes_its_channels_through_another(redis_server, other):
    """The owner SIGTERMed: a poll held through another instance reads the close 1012, as a poll held on the owner does."""
    leaving = start_instance(redis_server)
    try:
        async with client(leaving) as at_leaving, client(other) as at_other:
            channel = PollChannel(at_leaving, ALLOWED)
            await channel.open()
            await channel.join()
            held = asyncio.create_task(through(channel, at_other).poll())
            await asyncio.sleep(0.3)
            assert await asyncio.to_thread(leaving.terminate) == 0
            assert (await held)["close"] == {"code": 1012, "reason": "server restarting"}
    finally:
        leaving.stop()


async def test_instance_stopping_ends_the_polls_it_forwards_at_once(redis_server, owner):
    """An instance SIGTERMed while it holds a poll for another's channel answers it 404 at once and exits quickly."""
    leaving = start_instance(redis_server)
    try:
        async with client(owner) as at_owner, client(leaving) as at_leaving, opened(at_owner, ALLOWED) as channel:
            await channel.join()
            held = asyncio.create_task(at_leaving.get(f"/poll/{channel.id}", params={"from": channel.next},
                                                      headers=channel.headers))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            assert await asyncio.to_thread(leaving.terminate) == 0
            assert time.monotonic() - started < 2
            answer = await held
            assert answer.status_code == 404 and answer.json()["error"] == "unknown_channel"
            assert (await channel.send({"type": "ping", "t": 1})).status_code == 204  # on the owner, unharmed
    finally:
        leaving.stop()


async def test_fallback_through_nginx_in_front_of_both(instances):
    """The shipped deploy/nginx.conf, round robin over both instances: a whole conversation on one channel."""
    require_nginx()
    async with Nginx.deployed([process.port for process in instances]) as proxy:
        async with client(proxy) as http, opened(http, ALLOWED) as channel:
            await channel.join()
            for number in range(3):
                assert (await channel.send({"type": "message", "id": f"n{number}", "text": "Do you ship abroad?"})
                        ).status_code == 204
                frames = await channel.receive_until("reply")
                assert frames[0] == {"type": "ack", "id": f"n{number}", "seq": frames[0]["seq"]}
                assert frames[-1]["type"] == "reply" and frames[-1]["in_reply_to"] == f"n{number}"
