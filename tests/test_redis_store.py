"""What only the shared store has: several instances (two RedisStore objects on one real Redis), real
expiry, claims, the bus across instances, and Redis dying and coming back. The guarantees every store
shares are in tests/test_store.py."""

import asyncio
import json
import logging
import time

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from redis_server import RedisServer, require_redis
from server.conversations.redis_store import RedisStore
from server.conversations.store import StoreUnavailable

pytestmark = pytest.mark.timeout(30)
ORIGIN = "https://a.test"


@pytest.fixture
async def raw(redis_url):
    """A plain client on the test's database, to look at the keys."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def stores(redis_url):
    """Two instances sharing the test's database."""
    pair = [RedisStore(redis_url), RedisStore(redis_url)]
    for store in pair:
        await store.open()
    yield pair
    for store in pair:
        await store.close()


@pytest.fixture
async def buses(stores):
    pair = [store.bus() for store in stores]
    for bus in pair:
        await bus.start()
    yield pair
    for bus in pair:
        await bus.stop()


class Inbox:
    """A watcher's send: the frames it received, and a way to wait for them."""

    def __init__(self):
        self.frames = []
        self.arrived = asyncio.Event()

    async def __call__(self, frame):
        self.frames.append(frame)
        self.arrived.set()

    async def wait_for(self, count, timeout=3.0):
        """The frames, once there are ``count``."""
        return await self.wait_until(lambda frames: len(frames) >= count, timeout)

    async def wait_until(self, done, timeout=3.0):
        async with asyncio.timeout(timeout):
            while True:
                self.arrived.clear()
                if done(self.frames):
                    return self.frames
                await self.arrived.wait()


async def test_a_sessions_keys_share_one_slot_and_all_expire(stores, raw):
    """Every key of a conversation has the session's hash tag (one Redis Cluster slot) and a TTL."""
    store = stores[0]
    sid = await store.create_session(ORIGIN)
    await store.add_visitor_message(sid, "m1", "hello")
    await store.claim(sid, "m1", "r1", "en", 30)
    await store.bus().stream_started(sid, {"type": "reply_start", "id": "r1", "in_reply_to": "m1", "text": ""})
    await store.rate_wait(sid, 20, 10, 10)
    keys = [name async for name in raw.scan_iter(match=f"chat:{{{sid}}}:*")]
    assert sorted(name.rsplit(":", 1)[1] for name in keys) == [
        "claims", "entries", "ids", "meta", "rate", "streams"]
    assert len({key_slot(name.encode()) for name in keys} | {key_slot(f"chat:{{{sid}}}:live".encode())}) == 1
    assert all([await raw.pttl(name) > 0 for name in keys])


async def test_redis_deletes_a_quiet_conversation_by_itself(redis_url, raw):
    """Past retention (and the margin) the keys are gone from Redis; sweep trims the index."""
    store = RedisStore(redis_url, retention=0.3, margin=0.1)
    await store.open()
    try:
        sid = await store.create_session(ORIGIN)
        await store.add_visitor_message(sid, "m1", "hello")
        await store.add_reply(sid, "r1", "m1", "hi")
        assert len([name async for name in raw.scan_iter(match=f"chat:{{{sid}}}:*")]) == 4
        await asyncio.sleep(0.5)
        assert [name async for name in raw.scan_iter(match=f"chat:{{{sid}}}:*")] == []
        assert not await store.find_session(sid, ORIGIN)
        assert await store.session_count() == 0 and await store.sweep() == 1
        assert await raw.zcard("chat:sessions") == 0
    finally:
        await store.close()


async def test_a_resend_through_another_instance_is_found(stores):
    """The widget resends to whichever instance it reaches: the message is stored once."""
    a, b = stores
    sid = await a.create_session(ORIGIN)
    entry, is_new = await a.add_visitor_message(sid, "m1", "hello")
    again, again_new = await b.add_visitor_message(sid, "m1", "hello")
    assert is_new and not again_new and again == entry
    assert (await b.add_visitor_message(sid, "m2", "more"))[0].seq == 2
    assert [e.id for e in await a.entries_after(sid, 0)] == ["m1", "m2"]
    assert await b.find_session(sid, ORIGIN) and await b.last_seq(sid) == 2


async def test_one_instance_answers_and_another_takes_over_with_the_same_reply_id(stores, raw):
    """A claim excludes the other instance until its lease lapses; then the other gets the SAME reply id
    (the widget restarts that stream) and lapsed_claims lists the question; whoever stores second gets
    the first answer back, and nothing is left in the claims index."""
    a, b = stores
    sid = await a.create_session(ORIGIN)
    await a.add_visitor_message(sid, "m1", "question")
    assert await a.claim(sid, "m1", "rA", "en", 0.3) == ("rA", "en")
    assert await b.claim(sid, "m1", "rB", "de", 0.3) is None
    assert await a.claim(sid, "m1", "rA2", None, 0.3) == ("rA", "en")  # its own claim, again
    assert await a.renew(sid, "m1", 0.3) and not await b.renew(sid, "m1", 0.3)
    assert await b.lapsed_claims() == []
    await asyncio.sleep(0.35)
    assert await b.lapsed_claims() == [(sid, "m1")]
    assert await b.claim(sid, "m1", "rB", "de", 5) == ("rA", "en")
    assert not await a.renew(sid, "m1", 0.3) and await a.claim(sid, "m1", "rA", "en", 0.3) is None
    assert await a.lapsed_claims() == []  # B's lease is live
    results = await asyncio.gather(b.add_reply(sid, "rA", "m1", "from B"), a.add_reply(sid, "rA", "m1", "from A"))
    assert sorted(is_new for _, is_new in results) == [False, True] and results[0][0] == results[1][0]
    assert [e.author for e in await a.entries_after(sid, 0)] == ["visitor", "consultant"]
    assert await raw.zcard("chat:claims") == 0  # the stored answer took the question out of the index
    assert await b.claim(sid, "m1", "rC", "en", 5) is None  # answered
    assert await a.lapsed_claims() == []


async def test_a_claim_on_an_answered_question_leaves_no_lasting_trace(stores, raw):
    """lapsed_claims drops index entries whose question was answered meanwhile."""
    a, b = stores
    sid = await a.create_session(ORIGIN)
    await a.add_visitor_message(sid, "m1", "question")
    await a.claim(sid, "m1", "rA", "en", 0.05)
    await a.add_reply(sid, "rA", "m1", "answer")
    assert await b.claim(sid, "m1", "rB", "en", 0.05) is None  # refused, but indexed (one round trip)
    await asyncio.sleep(0.1)
    assert await b.lapsed_claims() == [] and await raw.zcard("chat:claims") == 0


async def test_the_message_rate_holds_across_instances(stores):
    """A session's bucket is in Redis: reconnecting to another instance does not refill it."""
    a, b = stores
    sid = await a.create_session(ORIGIN)
    assert [await a.rate_wait(sid, 20, 10, 2), await b.rate_wait(sid, 20, 10, 2)] == [0, 0]
    assert 0.4 < await b.rate_wait(sid, 20, 10, 2) <= 0.5


async def test_a_visitor_who_stops_reading_holds_up_only_their_own_conversation(stores, buses):
    """The bus's reader does not wait for sockets: a watcher whose send never returns (a client that
    stopped reading) delays its own session's frames, not another session's."""
    a, b = buses
    stuck_session = await stores[0].create_session(ORIGIN)
    other_session = await stores[0].create_session(ORIGIN)
    never = asyncio.Event()

    async def stuck(frame):
        await never.wait()

    inbox = Inbox()
    await b.watch(stuck_session, stuck)
    await b.watch(other_session, inbox)
    await a.publish(stuck_session, {"type": "ack", "id": "m1", "seq": 1})
    await a.publish(other_session, {"type": "ack", "id": "m2", "seq": 1})
    assert await inbox.wait_for(1) == [{"type": "ack", "id": "m2", "seq": 1}]
    never.set()


async def test_a_frame_published_on_one_instance_reaches_a_watcher_on_the_other(stores, buses, raw):
    """One subscription per watched session, from its first local watcher to its last."""
    a, b = buses
    sid = await stores[0].create_session(ORIGIN)
    inbox, second = Inbox(), Inbox()
    assert await b.watch(sid, inbox) == []
    assert await b.watch(sid, second) == []
    await a.publish(sid, {"type": "ack", "id": "m1", "seq": 1})
    assert await inbox.wait_for(1) == [{"type": "ack", "id": "m1", "seq": 1}]
    assert await second.wait_for(1) == [{"type": "ack", "id": "m1", "seq": 1}]
    channel = f"chat:{{{sid}}}:live"
    assert (await raw.pubsub_numsub(channel)) == [(channel, 1)]
    b.unwatch(sid, inbox)
    b.unwatch(sid, second)
    for _ in range(100):
        if (await raw.pubsub_numsub(channel)) == [(channel, 0)]:
            break
        await asyncio.sleep(0.01)
    assert (await raw.pubsub_numsub(channel)) == [(channel, 0)]
    await a.publish(sid, {"type": "ack", "id": "m2", "seq": 2})
    await asyncio.sleep(0.05)
    assert len(inbox.frames) == 1 and not b.watchers


async def test_a_watcher_joining_mid_reply_gets_the_text_so_far_once(stores, buses):
    """Chunks stream on A while watchers join on B at different moments: each sees the reply so far,
    then every later chunk once (the text it ends with is the reply's, nothing doubled, nothing missing);
    the stored reply ends the stream."""
    a, b = buses
    sid = await stores[0].create_session(ORIGIN)
    await stores[0].add_visitor_message(sid, "m1", "question")
    await a.stream_started(sid, {"type": "reply_start", "id": "r1", "in_reply_to": "m1", "text": ""})
    chunks = [f"{n}é/ " for n in range(150)]

    async def stream():
        for chunk in chunks:
            await a.stream_chunk(sid, {"type": "reply_chunk", "id": "r1", "text": chunk})

    inboxes = [Inbox() for _ in range(6)]
    firsts = []
    streaming = asyncio.create_task(stream())
    for inbox in inboxes:
        firsts.append(await b.watch(sid, inbox))
        await asyncio.sleep(0.005)
    await streaming
    await a.publish(sid, {"type": "reply", "id": "r1", "in_reply_to": "m1", "text": "".join(chunks), "seq": 2})
    for inbox, first in zip(inboxes, firsts):
        await inbox.wait_until(lambda frames: frames and frames[-1]["type"] == "reply")
        frames = first + inbox.frames
        starts = [f for f in frames if f["type"] == "reply_start"]
        assert len(starts) == 1, frames[:3]
        text = starts[0]["text"] + "".join(f["text"] for f in frames if f["type"] == "reply_chunk")
        assert text == "".join(chunks)
    assert any(first and first[0]["text"] for first in firsts)  # some joined mid-reply
    await stores[0].add_reply(sid, "r1", "m1", "".join(chunks))
    await a.stream_ended(sid, "r1")
    assert await b.watch(sid, Inbox()) == []


async def test_a_reply_taken_over_restarts_its_stream_for_watchers_that_had_it(stores, buses):
    """The instance taking a lapsed question over streams the reply again under the same id: a watcher
    whose snapshot held the dead instance's text gets the new start and every new chunk, even those
    ending before the old text's length."""
    a, b = buses
    sid = await stores[0].create_session(ORIGIN)
    await a.stream_started(sid, {"type": "reply_start", "id": "r1", "in_reply_to": "m1", "text": ""})
    await a.stream_chunk(sid, {"type": "reply_chunk", "id": "r1", "text": "abcdef"})
    inbox = Inbox()
    assert [f["text"] for f in await b.watch(sid, inbox)] == ["abcdef"]
    await b.stream_started(sid, {"type": "reply_start", "id": "r1", "in_reply_to": "m1", "text": ""})
    await b.stream_chunk(sid, {"type": "reply_chunk", "id": "r1", "text": "xy"})
    assert [(f["type"], f["text"]) for f in await inbox.wait_for(2)] == [("reply_start", ""), ("reply_chunk", "xy")]


async def test_a_dead_redis_is_store_unavailable_within_the_timeout():
    """SIGKILLed Redis: every operation raises StoreUnavailable quickly (refused connections), and a
    new watcher waits at most the 2 s timeout for its subscription; nothing hangs."""
    require_redis()
    with RedisServer() as server:
        store = RedisStore(server.url(0))
        await store.open()
        bus = store.bus()
        await bus.start()
        try:
            sid = await store.create_session(ORIGIN)
            server.kill()
            operations = [store.find_session(sid, ORIGIN), store.add_visitor_message(sid, "m1", "x"),
                          store.add_reply(sid, "r1", "m1", "y"), store.entries_after(sid, 0),
                          store.claim(sid, "m1", "r1", "en", 5), store.rate_wait(sid, 20, 10, 10),
                          store.healthy(), store.used_bytes(), store.create_session(ORIGIN),
                          bus.publish(sid, {"type": "ack"}), bus.watch(sid, Inbox())]
            for operation in operations:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable, match="Redis at redis://127.0.0.1"):
                    await operation
                assert time.monotonic() - started < 2.5
        finally:
            await bus.stop()
            await store.close()


async def test_after_a_restart_acknowledged_data_is_back_and_watchers_hear_of_the_gap():
    """Redis killed and restarted on its AOF: what was acknowledged is there, scripts are loaded again,
    the bus resubscribes by itself and calls on_gap with the sessions watched across the break."""
    require_redis()
    with RedisServer() as server:
        a, b = RedisStore(server.url(0)), RedisStore(server.url(0))
        for store in (a, b):
            await store.open()
        gaps = []
        bus_a, bus_b = a.bus(), b.bus()
        bus_b.on_gap = gaps.append
        for bus in (bus_a, bus_b):
            await bus.start()
        try:
            sid = await a.create_session(ORIGIN)
            for n in range(3):
                await a.add_visitor_message(sid, f"m{n}", f"question {n}")
            inbox = Inbox()
            await bus_b.watch(sid, inbox)
            server.kill()
            with pytest.raises(StoreUnavailable):
                await a.add_visitor_message(sid, "m9", "lost")
            server.restart()
            assert [e.id for e in await b.entries_after(sid, 0)] == ["m0", "m1", "m2"]
            assert (await a.add_visitor_message(sid, "m3", "after"))[0].seq == 4
            async with asyncio.timeout(5):
                while not gaps:
                    await asyncio.sleep(0.02)
            assert gaps == [[sid]]
            await bus_a.publish(sid, {"type": "ack", "id": "m3", "seq": 4})
            assert await inbox.wait_for(1) == [{"type": "ack", "id": "m3", "seq": 4}]
        finally:
            for bus in (bus_a, bus_b):
                await bus.stop()
            for store in (a, b):
                await store.close()


async def test_an_unreachable_redis_is_named_without_its_password():
    """open() fails at once with one line naming the URL, never its password."""
    store = RedisStore("redis://chat:s3cret@127.0.0.1:1/0?password=s3cret")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as refused:
        await store.open()
    await store.close()
    message = str(refused.value)
    assert "redis://chat@127.0.0.1:1/0" in message and "s3cret" not in message and "\n" not in message
    assert time.monotonic() - started < 2.5


async def test_a_redis_that_evicts_is_warned_about(caplog):
    """maxmemory-policy other than noeviction drops conversations silently: open() says so."""
    require_redis()
    with RedisServer() as server:
        assert server.command("CONFIG", "SET", "maxmemory-policy", "allkeys-lru") == "+OK"
        store = RedisStore(server.url(0))
        with caplog.at_level(logging.WARNING, logger="chat_widget.store"):
            await store.open()
        await store.close()
    assert any("allkeys-lru" in record.getMessage() and "noeviction" in record.getMessage()
               for record in caplog.records)


def test_frames_on_the_channel_are_plain_json(redis_url):
    """What other tools see on chat:{SID}:live: frames in JSON, stream frames with their generation and length."""
    async def run():
        store = RedisStore(redis_url)
        await store.open()
        raw = aioredis.Redis.from_url(redis_url, decode_responses=True, protocol=2)
        pubsub = raw.pubsub()
        try:
            sid = await store.create_session(ORIGIN)
            await pubsub.subscribe(f"chat:{{{sid}}}:live")
            await pubsub.get_message(timeout=1)
            bus = store.bus()
            await bus.stream_started(sid, {"type": "reply_start", "id": "r1", "in_reply_to": "m1", "text": ""})
            await bus.stream_chunk(sid, {"type": "reply_chunk", "id": "r1", "text": "é!"})
            got = [json.loads((await pubsub.get_message(timeout=1))["data"]) for _ in range(2)]
            assert got[0][1:] == [0, {"type": "reply_start", "id": "r1", "in_reply_to": "m1", "text": ""}]
            assert got[1][0] == got[0][0] and got[1][1:] == [3, {"type": "reply_chunk", "id": "r1", "text": "é!"}]
        finally:
            await pubsub.aclose()
            await raw.aclose()
            await store.close()

    asyncio.run(run())
