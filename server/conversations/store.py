"""Conversation storage behind a small interface: sessions and their numbered entries.

A session is one visitor's conversation. Each entry (a visitor message once stored, a consultant
reply) gets the next number of the session's sequence, so a widget that reconnects can say "I have
everything up to 17" and receive the rest. Visitor messages are keyed by the id the widget chose, so
a resend after a lost acknowledgement finds the stored entry instead of adding a second one.

Three implementations: ``MemoryStore`` (tests, and a server that may forget on restart),
``SqliteStore`` (the default: a local file, write-ahead logging, every entry committed before it is
acknowledged, so a restart or crash of the process loses nothing), and ``RedisStore``
(``redis_store.py``: shared by several server instances, which is why the interface also has claims,
a bus and per-session rate buckets: in one process they are trivial, across instances they are not).
"""

import asyncio
import secrets
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

from protocol import frames, ratelimit

from .bus import LocalBus


class Entry:
    """One numbered conversation entry."""

    __slots__ = ("seq", "author", "id", "text", "in_reply_to")

    def __init__(self, seq, author, id, text, in_reply_to=None):
        self.seq = seq
        self.author = author
        self.id = id
        self.text = text
        self.in_reply_to = in_reply_to

    def frame(self, live):
        """The frame that shows this entry to the widget (see docs/protocol.md)."""
        if self.author == "visitor":
            return frames.ack(self.id, self.seq) if live else frames.visitor_message(self.id, self.text, self.seq)
        return frames.reply(self.id, self.in_reply_to, self.text, self.seq)

    def __eq__(self, other):
        return isinstance(other, Entry) and all(getattr(self, k) == getattr(other, k) for k in self.__slots__)

    def __repr__(self):
        return f"Entry({self.seq}, {self.author!r}, {self.id!r}, {self.text[:20]!r})"


class ConversationFull(Exception):
    """The conversation holds its byte budget (``max_bytes``): the message was not stored."""


class StoreUnavailable(Exception):
    """The store cannot be reached now (a shared store's server is down or restarting): nothing was
    stored; connections are closed with 4203 and the widget retries (docs/protocol.md)."""


ENTRY_OVERHEAD = 100  # MemoryStore's rough bytes per entry and per session besides the text


def size_of(text):
    """What an entry's text counts against the budgets: its UTF-8 bytes."""
    return len(text.encode("utf-8"))


def new_session_id():
    """Unguessable: 192 random bits."""
    return secrets.token_urlsafe(24)


class Store:
    """The interface. ``now`` is wall-clock seconds; ``retention`` is seconds since last activity;
    ``max_entries`` bounds what a conversation keeps (older entries are dropped); ``max_bytes`` bounds
    what it may hold in all, visitor messages and replies (None: no bound): a visitor message past it
    raises ``ConversationFull``, and from then on every new one does (a smaller message after it would
    otherwise land in the full conversation while the widget moves to a new one); a reply is always
    stored (the question was accepted)."""

    shared = False  # True when several server instances use this store at once

    def __init__(self, retention=1800.0, max_entries=500, max_bytes=None, clock=time.time):
        self.retention = retention
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self._rates = {}  # session id -> TokenBucket (rate_wait), for the stores of one process

    def _over_budget(self, held, text):
        return self.max_bytes is not None and held + size_of(text) > self.max_bytes

    async def open(self):
        pass

    async def close(self):
        pass

    async def create_session(self, origin):
        raise NotImplementedError

    async def find_session(self, session_id, origin):
        """True when the session exists, is not expired, and belongs to this origin."""
        raise NotImplementedError

    async def add_visitor_message(self, session_id, message_id, text):
        """Store a visitor message once; returns ``(entry, is_new)`` (the stored one for a resend).
        Raises ``ConversationFull`` (for a message not stored before) past ``max_bytes``."""
        raise NotImplementedError

    async def add_reply(self, session_id, reply_id, in_reply_to, text):
        """Store the answer to the visitor message ``in_reply_to``; returns ``(entry, is_new)``. A question
        has one answer: when it has one already (another instance answered after this one's claim
        lapsed), that one is returned and nothing is stored."""
        raise NotImplementedError

    async def entries_after(self, session_id, seq):
        raise NotImplementedError

    # ---- what several instances need; trivial in one process --------------------------------------
    def bus(self):
        """How frames reach the sockets watching a session, wherever they are connected (``bus.py``)."""
        return LocalBus()

    async def claim(self, session_id, message_id, reply_id, lang, lease):
        """Take the right to answer ``message_id`` for ``lease`` seconds. Returns ``(reply_id, lang)`` to
        answer with: an earlier claimer's reply id and language when its lease lapsed (the widget then
        restarts that reply's stream), else the ones given; None when another instance holds a live
        lease or the question is answered. In one process the service itself keeps one answer in progress
        per question, so this only checks that the question has no answer yet."""
        if message_id not in await self.unanswered(session_id):
            return None
        return reply_id, lang

    async def renew(self, session_id, message_id, lease):
        """Extend a claim while the reply is produced; False when it was lost (another took over)."""
        return True

    async def lapsed_claims(self, limit=50):
        """Questions whose claim lapsed unanswered (their instance died): ``[(session_id, message_id)]``."""
        return []

    async def rate_wait(self, session_id, rate, per, burst):
        """The session's own message bucket, wherever its visitor connects: takes a token and returns 0,
        or returns the seconds to wait (nothing taken). Reconnecting does not refill it."""
        bucket = self._rates.get(session_id)
        if bucket is None:
            bucket = self._rates[session_id] = ratelimit.TokenBucket(rate, per, burst)
        now = time.monotonic()
        return 0.0 if bucket.take(now) else bucket.wait(now)

    def _forget_rates(self):
        """Buckets that are full again are the same as none (called by sweep)."""
        now = time.monotonic()
        for session_id in [sid for sid, bucket in self._rates.items() if bucket.wait(now, bucket.burst) == 0]:
            del self._rates[session_id]

    async def healthy(self):
        """Raises when the store does not answer (health, readiness)."""
        await self.session_count()

    async def last_seq(self, session_id):
        entries = await self.entries_after(session_id, 0)
        return entries[-1].seq if entries else 0

    async def unanswered(self, session_id):
        """The visitor message ids that have no reply yet (e.g. the server crashed while answering)."""
        entries = await self.entries_after(session_id, 0)
        answered = {e.in_reply_to for e in entries if e.author == "consultant"}
        return [e.id for e in entries if e.author == "visitor" and e.id not in answered]

    async def sweep(self):
        """Delete expired sessions; returns how many."""
        raise NotImplementedError

    async def session_count(self):
        raise NotImplementedError

    async def used_bytes(self):
        """How much of its budget the store uses (``StoreBudget``): what sweeping expired sessions frees."""
        raise NotImplementedError


class MemoryStore(Store):
    def __init__(self, **options):
        super().__init__(**options)
        self._sessions = {}  # id -> {"origin", "touched", "entries": [Entry], "seq", "bytes"}
        self._used = 0       # used_bytes, kept as entries come and go (it is read every second)

    async def create_session(self, origin):
        session_id = new_session_id()
        self._sessions[session_id] = {"origin": origin, "touched": self.clock(), "entries": [], "seq": 0, "bytes": 0}
        self._used += ENTRY_OVERHEAD
        return session_id

    def _live(self, session_id):
        session = self._sessions.get(session_id)
        if session is None or self.clock() - session["touched"] > self.retention:
            return None
        return session

    async def find_session(self, session_id, origin):
        session = self._live(session_id)
        return session is not None and session["origin"] == origin

    def _append(self, session_id, make_entry):
        session = self._live(session_id)
        if session is None:
            raise KeyError(session_id)
        session["seq"] += 1
        session["touched"] = self.clock()
        entry = make_entry(session["seq"])
        session["bytes"] += size_of(entry.text)
        session["entries"].append(entry)
        self._used += ENTRY_OVERHEAD + size_of(entry.text)
        dropped = session["entries"][:-self.max_entries]
        del session["entries"][:-self.max_entries]
        self._used -= sum(ENTRY_OVERHEAD + size_of(e.text) for e in dropped)
        return entry

    async def add_visitor_message(self, session_id, message_id, text):
        session = self._live(session_id)
        if session is None:
            raise KeyError(session_id)
        for entry in session["entries"]:
            if entry.author == "visitor" and entry.id == message_id:
                return entry, False
        if self._over_budget(session["bytes"], text):
            session["bytes"] = max(session["bytes"], self.max_bytes)
            raise ConversationFull(session_id)
        return self._append(session_id, lambda seq: Entry(seq, "visitor", message_id, text)), True

    async def add_reply(self, session_id, reply_id, in_reply_to, text):
        session = self._live(session_id)
        for entry in session["entries"] if session else ():
            if entry.author == "consultant" and entry.in_reply_to == in_reply_to:
                return entry, False
        return self._append(session_id, lambda seq: Entry(seq, "consultant", reply_id, text, in_reply_to)), True

    async def entries_after(self, session_id, seq):
        session = self._live(session_id)
        return [e for e in session["entries"] if e.seq > seq] if session else []

    async def sweep(self):
        self._forget_rates()
        expired = [sid for sid in self._sessions if self._live(sid) is None]
        for session_id in expired:
            session = self._sessions.pop(session_id)
            self._used -= ENTRY_OVERHEAD + sum(ENTRY_OVERHEAD + size_of(e.text) for e in session["entries"])
        return len(expired)

    async def session_count(self):
        return len(self._sessions)

    async def used_bytes(self):
        """The texts kept, plus a rough 100 bytes per entry and per session for the rest."""
        return self._used


SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, origin TEXT NOT NULL, touched REAL NOT NULL, seq INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS entries (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL, author TEXT NOT NULL, id TEXT NOT NULL, text TEXT NOT NULL, in_reply_to TEXT,
    PRIMARY KEY (session_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS entries_by_id ON entries(session_id, author, id);
"""


class SqliteStore(Store):
    """SQLite in WAL mode. ``synchronous=NORMAL`` survives a process crash (the WAL is written before
    commit returns); ``durability="full"`` also survives power loss, at one fsync per entry.

    One thread owns the connection and runs each operation whole, one after another: an operation is
    one transaction and one trip to that thread and back. (Through aiosqlite every statement, fetch and
    commit was a trip of its own, about twenty per chat message; with one per operation the server's CPU
    per message fell from about 1.7 to 0.9 ms: bench/message_cost.py, 2026-11-30.)
    """

    def __init__(self, path, durability="normal", **options):
        super().__init__(**options)
        self.path = str(path)
        self.durability = durability
        self._db = None      # used only in self._thread
        self._thread = None  # one worker: operations never interleave

    async def _run(self, operation, *args):
        if self._thread is None:
            raise StoreUnavailable("the SQLite store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._whole, operation, args)

    def _whole(self, operation, args):
        """One operation in the store's thread, all or nothing: a statement that fails (a full disk, a
        locked file) rolls back what the operation did so far, so the next operation, maybe another
        visitor's, never commits half of this one."""
        try:
            return operation(*args)
        except BaseException:
            if self._db is not None and self._db.in_transaction:
                self._db.rollback()
            raise

    async def open(self):
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="chat-sqlite")
        await self._run(self._open)

    def _open(self):
        db = self._db = sqlite3.connect(self.path)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(SCHEMA)
        columns = [row[1] for row in db.execute("PRAGMA table_info(sessions)")]
        if "bytes" not in columns:  # a file from before conversations had a byte budget
            try:
                db.execute("ALTER TABLE sessions ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0")
            except sqlite3.OperationalError as error:  # another process upgraded it first
                if "duplicate column" not in str(error):
                    raise
        db.commit()

    async def close(self):
        if self._thread is None:
            return
        if self._db is not None:
            await self._run(self._close)
        self._thread.shutdown(wait=True)
        self._thread = None

    def _close(self):
        self._db.close()
        self._db = None

    async def create_session(self, origin):
        return await self._run(self._create_session, origin)

    def _create_session(self, origin):
        session_id = new_session_id()
        self._db.execute("INSERT INTO sessions (id, origin, touched) VALUES (?, ?, ?)", (session_id, origin, self.clock()))
        self._db.commit()
        return session_id

    async def find_session(self, session_id, origin):
        return await self._run(self._find_session, session_id, origin)

    def _find_session(self, session_id, origin):
        return self._db.execute("SELECT 1 FROM sessions WHERE id = ? AND origin = ? AND touched >= ?",
                                (session_id, origin, self.clock() - self.retention)).fetchone() is not None

    def _append(self, session_id, author, entry_id, text, in_reply_to):
        row = self._db.execute(
            "UPDATE sessions SET seq = seq + 1, touched = ?, bytes = bytes + ? WHERE id = ? RETURNING seq",
            (self.clock(), size_of(text), session_id)).fetchone()
        if row is None:
            self._db.rollback()
            raise KeyError(session_id)
        seq = row[0]
        self._db.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)", (session_id, seq, author, entry_id, text, in_reply_to))
        self._db.execute("DELETE FROM entries WHERE session_id = ? AND seq <= ?", (session_id, seq - self.max_entries))
        self._db.commit()
        return Entry(seq, author, entry_id, text, in_reply_to)

    async def add_visitor_message(self, session_id, message_id, text):
        return await self._run(self._add_visitor_message, session_id, message_id, text)

    def _add_visitor_message(self, session_id, message_id, text):
        row = self._db.execute("SELECT seq, text FROM entries WHERE session_id = ? AND author = 'visitor' AND id = ?",
                               (session_id, message_id)).fetchone()
        if row is not None:
            return Entry(row[0], "visitor", message_id, row[1]), False
        if self.max_bytes is not None:
            row = self._db.execute("SELECT bytes FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if row is not None and self._over_budget(row[0], text):
                self._db.execute("UPDATE sessions SET bytes = MAX(bytes, ?) WHERE id = ?", (self.max_bytes, session_id))
                self._db.commit()
                raise ConversationFull(session_id)
        return self._append(session_id, "visitor", message_id, text, None), True

    async def add_reply(self, session_id, reply_id, in_reply_to, text):
        return await self._run(self._add_reply, session_id, reply_id, in_reply_to, text)

    def _add_reply(self, session_id, reply_id, in_reply_to, text):
        row = self._db.execute(
            "SELECT seq, id, text FROM entries WHERE session_id = ? AND author = 'consultant' AND in_reply_to = ?",
            (session_id, in_reply_to)).fetchone()
        if row is not None:
            return Entry(row[0], "consultant", row[1], row[2], in_reply_to), False
        return self._append(session_id, "consultant", reply_id, text, in_reply_to), True

    async def entries_after(self, session_id, seq):
        return await self._run(self._entries_after, session_id, seq)

    def _entries_after(self, session_id, seq):
        return [Entry(*row) for row in self._db.execute(
            "SELECT seq, author, id, text, in_reply_to FROM entries WHERE session_id = ? AND seq > ? ORDER BY seq",
            (session_id, seq))]

    async def claim(self, session_id, message_id, reply_id, lang, lease):
        """As ``Store.claim``, without reading the whole conversation: one question, asked of the index."""
        return (reply_id, lang) if await self._run(self._unanswered, session_id, message_id) else None

    def _unanswered(self, session_id, message_id):
        return self._db.execute(
            "SELECT EXISTS (SELECT 1 FROM entries WHERE session_id = ? AND author = 'visitor' AND id = ?) "
            "AND NOT EXISTS (SELECT 1 FROM entries WHERE session_id = ? AND author = 'consultant' AND in_reply_to = ?)",
            (session_id, message_id, session_id, message_id)).fetchone()[0] == 1

    async def sweep(self):
        self._forget_rates()
        return await self._run(self._sweep)

    def _sweep(self):
        cursor = self._db.execute("DELETE FROM sessions WHERE touched < ?", (self.clock() - self.retention,))
        self._db.commit()
        return cursor.rowcount

    async def session_count(self):
        return await self._run(lambda: self._db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])

    async def used_bytes(self):
        """Pages in use: the file never shrinks by itself (no VACUUM), but the pages that sweeping and
        trimming free are reused before it grows again."""
        return await self._run(self._used_bytes)

    def _used_bytes(self):
        pages, free, size = (self._db.execute(f"PRAGMA {name}").fetchone()[0]
                             for name in ("page_count", "freelist_count", "page_size"))
        return (pages - free) * size
