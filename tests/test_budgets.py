"""The budgets as pure objects (fake clock), the stores' byte budgets, and the service's refusals."""

import asyncio
import sqlite3

import pytest

from protocol import close
from server.budgets import FULL, OK, WARN, AddressBudgets, StoreBudget
from server.config import DEFAULTS
from server.conversations.service import TOO_FAST, Conversations, NewConversationRefused
from server.conversations.store import ConversationFull, MemoryStore, SqliteStore

KB = 1024


def defaults():
    return AddressBudgets(DEFAULTS["address_messages_per_minute"], DEFAULTS["address_bytes_per_minute"],
                          DEFAULTS["address_conversations_per_hour"], DEFAULTS["address_replies_per_minute"])


def test_defaults_are_the_documented_ones():
    """30 messages and 64 KiB a minute, 60 new conversations an hour, 20 replies a minute per address;
    512 KiB per conversation; a 1 GiB store that warns at 80 % (docs/security.md)."""
    assert [DEFAULTS[name] for name in ("address_messages_per_minute", "address_bytes_per_minute",
                                        "address_conversations_per_hour", "address_replies_per_minute",
                                        "conversation_max_bytes", "store_max_bytes", "store_warn_percent")] \
        == [30, 64 * KB, 60, 20, 512 * KB, 1 << 30, 80]
    assert DEFAULTS["address_waiting_replies"] == 4


def spend(budgets, address, size, now):
    """Send one message the way the socket does: accepted when nothing says wait."""
    if budgets.message_wait(address, size, now) > 0:
        return False
    budgets.spend_message(address, size, now)
    return True


def test_a_minute_of_messages_at_once_then_one_every_two_seconds():
    budgets = defaults()
    assert all(spend(budgets, "198.51.100.7", 10, 0.0) for _ in range(30))
    assert not spend(budgets, "198.51.100.7", 10, 0.0)
    assert budgets.message_wait("198.51.100.7", 10, 0.0) == pytest.approx(2.0)
    assert spend(budgets, "198.51.100.7", 10, 2.0)


def test_bytes_per_minute_hold_across_all_of_an_addresses_connections():
    """Four 16 KB messages spend the minute's bytes: the fifth waits 15 s, whichever connection sends it;
    another address is not affected."""
    budgets = defaults()
    assert all(spend(budgets, "198.51.100.7", 16 * KB, 0.0) for _ in range(4))
    assert budgets.message_wait("198.51.100.7", 16 * KB, 0.0) == pytest.approx(15.0)
    assert budgets.message_wait("198.51.100.7", 100, 0.0) == pytest.approx(100 / (64 * KB / 60))
    assert spend(budgets, "203.0.113.9", 16 * KB, 0.0)


def test_at_most_a_minutes_bytes_plus_the_rate_over_any_time():
    """However a client times its messages, what passes is at most the burst plus the rate over the time."""
    budgets = defaults()
    accepted, now = 0, 0.0
    for step in range(2000):
        now += 0.05
        if spend(budgets, "a", 16 * KB, now):
            accepted += 16 * KB
    assert accepted <= 64 * KB + 64 * KB * now / 60


def test_new_conversations_per_hour():
    budgets = defaults()
    assert all(budgets.start_conversation("a", 0.0) for _ in range(60))
    assert not budgets.start_conversation("a", 0.0)
    assert budgets.conversation_wait("a", 0.0) == pytest.approx(60.0)
    assert budgets.start_conversation("a", 60.0)


def test_replies_per_minute():
    budgets = defaults()
    assert all(budgets.reply("a", 0.0) for _ in range(20))
    assert not budgets.reply("a", 1.0)
    assert budgets.reply("a", 3.0)


def test_addresses_are_forgotten_once_their_budgets_are_whole_again():
    budgets = defaults()
    for _ in range(60):
        budgets.start_conversation("a", 0.0)
    for _ in range(30):
        spend(budgets, "b", 10, 0.0)
    assert budgets.prune(59.0) == 2
    assert budgets.prune(61.0) == 1          # b's minute budgets are whole again
    assert budgets.prune(3601.0) == 0        # and a's hour


def test_store_budget_levels():
    budget = StoreBudget(1000, 80)
    assert budget.update(799) == OK and budget.accepting and budget.describe() is None
    assert budget.update(800) == WARN and budget.accepting and "warning level" in budget.describe()
    assert budget.update(1000) == FULL and not budget.accepting
    assert "new conversations are refused" in budget.describe() and "store_max_bytes" in budget.describe()
    assert budget.update(10) == OK and budget.accepting


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def store(request, tmp_path):
    options = {"retention": 600, "max_entries": 500, "max_bytes": 4 * KB}
    if request.param == "redis":
        from server.conversations.redis_store import RedisStore

        store = RedisStore(request.getfixturevalue("redis_url"), **options)
    else:
        store = MemoryStore(**options) if request.param == "memory" else SqliteStore(tmp_path / "chat.sqlite3", **options)
    await store.open()
    yield store
    await store.close()


async def test_a_conversation_holds_at_most_its_bytes(store):
    """Messages and replies count; past the budget a new message is refused, and every later one, however
    small; a resend of a stored one is still found (its acknowledgement may have been lost), and a reply is always stored."""
    sid = await store.create_session("https://a.test")
    await store.add_visitor_message(sid, "m1", "x" * 2000)
    await store.add_visitor_message(sid, "m2", "w" * 10)
    await store.add_reply(sid, "r1", "m1", "é" * 1000)   # 2,000 bytes in UTF-8: 4,010 held
    with pytest.raises(ConversationFull):
        await store.add_visitor_message(sid, "m3", "y" * 100)
    with pytest.raises(ConversationFull):  # once full, full: the widget is moving to a new conversation
        await store.add_visitor_message(sid, "m4", "y")
    entry, is_new = await store.add_visitor_message(sid, "m1", "x" * 2000)
    assert entry.seq == 1 and not is_new
    reply, is_new = await store.add_reply(sid, "r2", "m2", "z" * 500)  # past the budget: stored all the same
    assert is_new and reply.seq == 4
    assert [e.id for e in await store.entries_after(sid, 0)] == ["m1", "m2", "r1", "r2"]
    other = await store.create_session("https://a.test")
    assert (await store.add_visitor_message(other, "m2", "y" * 100))[1]


async def test_sweeping_gives_back_what_the_budget_counts(tmp_path):
    """SQLite's measure is the pages in use: it falls when expired conversations are swept, although the
    file keeps its size."""
    clock = [1000.0]
    store = SqliteStore(tmp_path / "chat.sqlite3", retention=60, clock=lambda: clock[0])
    await store.open()
    try:
        empty = await store.used_bytes()
        for n in range(40):
            sid = await store.create_session("https://a.test")
            await store.add_visitor_message(sid, "m", "x" * 16 * KB)
        full = await store.used_bytes()
        assert full - empty >= 40 * 16 * KB
        clock[0] += 61
        assert await store.sweep() == 40
        assert await store.used_bytes() < empty + 2 * 16 * KB
    finally:
        await store.close()


async def test_a_store_file_from_before_the_byte_budget_is_upgraded(tmp_path):
    """An SQLite file written by the previous version (no bytes column) opens, keeps its conversations,
    and counts from there."""
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE sessions (id TEXT PRIMARY KEY, origin TEXT NOT NULL, touched REAL NOT NULL,
                                   seq INTEGER NOT NULL DEFAULT 0);
            CREATE TABLE entries (session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
                seq INTEGER NOT NULL, author TEXT NOT NULL, id TEXT NOT NULL, text TEXT NOT NULL, in_reply_to TEXT,
                PRIMARY KEY (session_id, seq));
            INSERT INTO sessions VALUES ('old', 'https://a.test', 1000.0, 1);
            INSERT INTO entries VALUES ('old', 1, 'visitor', 'm1', 'hello', NULL);
        """)
    store = SqliteStore(path, retention=600, max_bytes=4 * KB, clock=lambda: 1000.0)
    await store.open()
    try:
        assert await store.find_session("old", "https://a.test")
        entry, is_new = await store.add_visitor_message("old", "m2", "x" * 4000)
        assert is_new and entry.seq == 2
        with pytest.raises(ConversationFull):
            await store.add_visitor_message("old", "m3", "x" * 200)
    finally:
        await store.close()


class CountingConsultant:
    name = "counting"

    def __init__(self):
        self.asked = 0

    async def reply(self, history, lang=None):
        self.asked += 1
        yield "an answer"


async def answered(conversations, sid):
    while conversations.answering:
        await asyncio.sleep(0)
    await asyncio.gather(*conversations.answering.values())
    return [e.text for e in await conversations.store.entries_after(sid, 0) if e.author == "consultant"]


async def test_new_conversations_are_refused_past_the_address_budget_and_when_the_store_is_full():
    budgets = AddressBudgets(30, 64 * KB, 2, 20)
    store_budget = StoreBudget(1 << 20, 80)
    conversations = Conversations(MemoryStore(), CountingConsultant(), budgets=budgets, store_budget=store_budget,
                                  clock=lambda: 0.0)
    first = (await conversations.open_session(None, 0, "https://a.test", "a"))[0]
    await conversations.open_session(None, 0, "https://a.test", "a")
    with pytest.raises(NewConversationRefused) as refused:
        await conversations.open_session(None, 0, "https://a.test", "a")
    assert refused.value.code == close.LIMITED and "try again in 1800 s" in refused.value.reason
    assert (await conversations.open_session(first, 0, "https://a.test", "a"))[1]  # resuming costs nothing
    store_budget.update(1 << 20)
    with pytest.raises(NewConversationRefused) as refused:
        await conversations.open_session(None, 0, "https://a.test", "b")
    assert refused.value.code == close.BUSY
    assert (await conversations.open_session(first, 0, "https://a.test", "a"))[1]  # existing ones go on


async def test_past_the_reply_budget_a_short_answer_stands_in_for_the_consultant():
    consultant = CountingConsultant()
    conversations = Conversations(MemoryStore(), consultant, budgets=AddressBudgets(30, 64 * KB, 60, 2),
                                  clock=lambda: 0.0)
    sid = (await conversations.open_session(None, 0, "https://a.test", "a"))[0]
    for n in range(3):
        await conversations.visitor_message(sid, f"m{n}", "hello?", "de-AT", "a")
        await answered(conversations, sid)
    assert await answered(conversations, sid) == ["an answer", "an answer", TOO_FAST["de"]]
    assert consultant.asked == 2


class WatchedConsultant:
    """Records how many replies it is producing at once, per address's question text."""
    name = "watched"

    def __init__(self):
        self.now = {}
        self.most = {}

    async def reply(self, history, lang=None):
        who = history[-1]["text"]
        self.now[who] = self.now.get(who, 0) + 1
        self.most[who] = max(self.most.get(who, 0), self.now[who])
        self.most["all"] = max(self.most.get("all", 0), sum(self.now.values()))
        await asyncio.sleep(0.01)
        yield "an answer"
        self.now[who] -= 1


async def test_the_consultant_answers_one_question_at_a_time_per_address():
    """A burst from one address waits its turns; another address's question is answered meanwhile."""
    consultant = WatchedConsultant()
    conversations = Conversations(MemoryStore(), consultant, budgets=AddressBudgets(30, 64 * KB, 60, 20),
                                  clock=lambda: 0.0)
    sessions = {}
    for address in ("a", "b"):
        sessions[address] = (await conversations.open_session(None, 0, "https://a.test", address))[0]
    for n in range(3):
        await conversations.visitor_message(sessions["a"], f"a{n}", "from a", None, "a")
    await conversations.visitor_message(sessions["b"], "b0", "from b", None, "b")
    for address in ("a", "b"):
        await answered(conversations, sessions[address])
    assert consultant.most == {"from a": 1, "from b": 1, "all": 2}
    assert conversations._turns == {}


class GatedConsultant:
    """Answers once the gate opens; records the history each reply was given."""
    name = "gated"

    def __init__(self):
        self.gate = asyncio.Event()
        self.histories = []

    async def reply(self, history, lang=None):
        self.histories.append([entry["text"] for entry in history])
        await self.gate.wait()
        yield f"answer {len(self.histories)}"


async def test_at_most_four_replies_wait_behind_the_one_in_progress_and_each_sees_the_answers_before_it():
    """A slow consultant: one reply in progress and four waiting per address; a question beyond that is
    answered at once with the short answer instead of waiting in an ever longer queue. The waiting ones
    are read in their turn, so each sees the answers to the questions before it."""
    consultant = GatedConsultant()
    conversations = Conversations(MemoryStore(), consultant, budgets=AddressBudgets(30, 64 * KB, 60, 20),
                                  clock=lambda: 0.0)
    sid = (await conversations.open_session(None, 0, "https://a.test", "a"))[0]
    for n in range(7):
        await conversations.visitor_message(sid, f"m{n}", f"q{n}", "en", "a")
    await asyncio.sleep(0.01)
    consultant.gate.set()
    texts = await answered(conversations, sid)
    assert sorted(texts) == sorted([f"answer {n}" for n in range(1, 6)] + [TOO_FAST["en"]] * 2)
    assert consultant.histories[1] == ["q0", "answer 1", "q1"] and conversations._turns == {}


async def test_the_memory_stores_measure_follows_what_it_holds():
    """Kept up to date as entries come, are trimmed and are swept (it is read every second)."""
    clock = [1000.0]
    store = MemoryStore(retention=60, max_entries=2, clock=lambda: clock[0])
    sid = await store.create_session("https://a.test")
    for n in range(5):
        await store.add_visitor_message(sid, f"m{n}", "x" * 1000)
    assert await store.used_bytes() == 100 + 2 * (100 + 1000)
    clock[0] += 61
    await store.sweep()
    assert await store.used_bytes() == 0
