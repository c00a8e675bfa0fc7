"""Every conversation store behaves the same: numbering, dedup by id, one answer per question, replay,
retention, bounds, the session's message rate, durability. Redis runs on the session's real redis-server
(tests/redis_server.py), each test on an empty database."""

import asyncio

import pytest

from server.conversations.redis_store import RedisStore
from server.conversations.store import MemoryStore, SqliteStore


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def make_store(kind, request, tmp_path, **options):
    if kind == "memory":
        return MemoryStore(**options)
    if kind == "sqlite":
        return SqliteStore(tmp_path / "chat.sqlite3", **options)
    return RedisStore(request.getfixturevalue("redis_url"), **options)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request, tmp_path):
    clock = Clock()
    options = {"retention": 600, "max_entries": 5, "clock": clock}
    store = make_store(request.param, request, tmp_path, **options)
    await store.open()
    store.test_clock = clock
    yield store
    await store.close()


async def test_entries_are_numbered_in_order(store):
    """Each entry takes the next sequence number of its session."""
    sid = await store.create_session("https://a.test")
    first, _ = await store.add_visitor_message(sid, "m1", "hello")
    reply, _ = await store.add_reply(sid, "r1", "m1", "hi there")
    assert (first.seq, reply.seq) == (1, 2)
    assert [e.id for e in await store.entries_after(sid, 0)] == ["m1", "r1"]
    assert [e.id for e in await store.entries_after(sid, 1)] == ["r1"]


async def test_resent_message_is_stored_once(store):
    """A resend with the same id returns the stored entry and adds nothing."""
    sid = await store.create_session("https://a.test")
    entry, new = await store.add_visitor_message(sid, "m1", "hello")
    again, new_again = await store.add_visitor_message(sid, "m1", "hello")
    assert new and not new_again and again.seq == entry.seq
    assert await store.last_seq(sid) == 1


async def test_session_is_bound_to_its_origin(store):
    """Another origin cannot find (resume) the session."""
    sid = await store.create_session("https://a.test")
    assert await store.find_session(sid, "https://a.test")
    assert not await store.find_session(sid, "https://evil.test")
    assert not await store.find_session("guess", "https://a.test")


async def test_retention_expires_quiet_sessions_and_sweep_removes_them(store):
    """A session quiet for longer than retention cannot be resumed and is swept."""
    sid = await store.create_session("https://a.test")
    await store.add_visitor_message(sid, "m1", "hello")
    store.test_clock.now += 599
    assert await store.find_session(sid, "https://a.test")
    store.test_clock.now += 2
    assert not await store.find_session(sid, "https://a.test")
    assert await store.sweep() == 1
    assert await store.session_count() == 0


async def test_history_is_bounded_per_session(store):
    """Only the newest max_entries entries are kept; numbering continues."""
    sid = await store.create_session("https://a.test")
    for n in range(8):
        await store.add_visitor_message(sid, f"m{n}", "x")
    kept = await store.entries_after(sid, 0)
    assert [e.seq for e in kept] == [4, 5, 6, 7, 8]


async def test_unanswered_lists_questions_without_reply(store):
    """Questions stored but never answered are found (to answer them after a crash)."""
    sid = await store.create_session("https://a.test")
    await store.add_visitor_message(sid, "m1", "a")
    await store.add_reply(sid, "r1", "m1", "b")
    await store.add_visitor_message(sid, "m2", "c")
    assert await store.unanswered(sid) == ["m2"]


async def test_a_question_has_one_answer(store):
    """A second answer to a question (another instance's, after a lapsed claim) is refused: the stored
    one comes back, not new, and nothing is added."""
    sid = await store.create_session("https://a.test")
    await store.add_visitor_message(sid, "m1", "a")
    first, first_new = await store.add_reply(sid, "r1", "m1", "b")
    again, again_new = await store.add_reply(sid, "r2", "m1", "another b")
    assert first_new and not again_new and again == first
    assert [e.id for e in await store.entries_after(sid, 0)] == ["m1", "r1"]
    assert await store.last_seq(sid) == 2 and await store.unanswered(sid) == []


async def test_a_session_has_its_own_message_bucket(store):
    """rate_wait takes a token and answers 0, or answers the seconds until one is there and takes
    nothing; each session has its own bucket; waiting as told is enough."""
    sid = await store.create_session("https://a.test")
    other = await store.create_session("https://a.test")
    assert [await store.rate_wait(sid, 10, 1, 2) for _ in range(2)] == [0, 0]  # the burst
    wait = await store.rate_wait(sid, 10, 1, 2)
    assert 0.05 < wait <= 0.1
    assert 0 < await store.rate_wait(sid, 10, 1, 2) <= wait  # asking again took nothing
    assert await store.rate_wait(other, 10, 1, 2) == 0
    await asyncio.sleep(0.1)
    assert await store.rate_wait(sid, 10, 1, 2) == 0


async def test_sqlite_keeps_everything_across_reopen(tmp_path):
    """What was committed survives closing and reopening the file (a restart)."""
    path = tmp_path / "chat.sqlite3"
    store = SqliteStore(path)
    await store.open()
    sid = await store.create_session("https://a.test")
    await store.add_visitor_message(sid, "m1", "hello")
    await store.close()
    reopened = SqliteStore(path)
    await reopened.open()
    assert await reopened.find_session(sid, "https://a.test")
    assert [e.text for e in await reopened.entries_after(sid, 0)] == ["hello"]
    await reopened.close()


async def test_only_a_stored_question_without_its_answer_is_claimed(store):
    """The answerer claims a question while it has no answer, not once answered; in one process, not a
    question of another session either (a shared store's claims are leases, keyed by what it is given)."""
    sid = await store.create_session("https://a.test")
    other = await store.create_session("https://a.test")
    await store.add_visitor_message(sid, "m1", "hello")
    await store.add_visitor_message(sid, "m2", "again")
    assert await store.claim(sid, "m1", "r1", "de", 30) == ("r1", "de")
    await store.add_reply(sid, "r1", "m1", "hi")
    assert await store.claim(sid, "m1", "r9", "de", 30) is None
    if not store.shared:
        assert await store.claim(other, "m2", "r2", None, 30) is None
    assert await store.claim(sid, "m2", "r2", None, 30) == ("r2", None)


async def test_a_failed_sqlite_operation_leaves_nothing_for_the_next_to_commit(tmp_path):
    """A statement that fails halfway through an operation (a full disk, a locked file) must not leave
    its first half to be committed by the next operation: the conversation's numbering has no gap."""
    store = SqliteStore(tmp_path / "chat.sqlite3")
    await store.open()
    try:
        session = await store.create_session("https://shop.example.com")
        await store.add_visitor_message(session, "m1", "hello")

        def numbered_then_failed():
            store._db.execute("UPDATE sessions SET seq = seq + 1 WHERE id = ?", (session,))
            raise OSError("disk full")

        with pytest.raises(OSError):
            await store._run(numbered_then_failed)
        second = (await store.add_visitor_message(session, "m2", "still there?"))[0]
        assert second.seq == 2
    finally:
        await store.close()
    with pytest.raises(Exception, match="closed"):
        await store.add_visitor_message(session, "m3", "after close")
