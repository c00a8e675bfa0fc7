"""Conversations in Redis, shared by every server instance: ``RedisStore`` and its bus, ``RedisBus``.

Same contract as ``SqliteStore`` (``store.py``): an entry is in Redis before it is acknowledged, a widget
replays from any instance after reconnecting, a resent visitor message is found by its id, a conversation
holds at most ``max_bytes`` (once refused, every later message is) and keeps its ``max_entries`` newest
entries. Durability is Redis's: with ``appendonly yes`` an acknowledged entry survives a restart or a
killed Redis (the AOF is written before the reply is sent), and with ``appendfsync everysec`` a power
loss costs at most the last second. Redis 7.0 has no ``WAITAOF``: a replica is no substitute.

Key layout. Every key of a session carries the session id as a hash tag, ``{SID}``, so Redis Cluster
keeps a conversation in one slot, and every script touches the keys of ONE session only:

    chat:{SID}:meta      hash  origin, touched (the instance clock's seconds), seq (last entry's
                               number), bytes (texts held), full ("1" once a message was refused)
    chat:{SID}:entries   list  the kept entries, oldest first, each ``[seq,author,id,text,in_reply_to]``
                               in JSON; numbers are consecutive, so entry ``s`` is at index
                               ``s - (seq - LLEN + 1)``. A list, not a sorted set: 419 bytes of
                               memory per question and answer against 674 (bench/redis_cost.py's
                               texts; members over 64 bytes take a sorted set out of its listpack)
    chat:{SID}:ids       hash  visitor message id -> its seq (dedup of resends)
    chat:{SID}:answered  hash  question id -> its reply's seq (one answer per question)
    chat:{SID}:claims    hash  question id -> {"holder","reply","lang","deadline"} (Redis TIME, ms)
    chat:{SID}:streams   hash  reply id -> ``[gen, reply_start frame with the text so far]``
    chat:{SID}:rate      hash  tokens, updated (Redis TIME): the session's message bucket
    chat:{SID}:live      channel: the session's frames (see ``RedisBus``)

and two global indexes, written by separate commands in the same pipeline round trip as the script
(so never atomically with it): they only say where to look, the per-session keys are the truth.

    chat:sessions        sorted set  SID by last activity (``session_count``, ``sweep``)
    chat:claims          sorted set  "SID MESSAGE_ID" by claim deadline, estimated from Redis TIME
                                     (``lapsed_claims`` checks each against the session's own keys)

Retention: each write sets ``PEXPIRE retention + margin`` on the session's keys, so Redis deletes a
quiet conversation by itself; ``find_session`` also compares ``touched`` with ``clock() - retention``,
as the other stores do. ``sweep`` only trims the ``chat:sessions`` index. Nothing here relies on
eviction: Redis must run with ``maxmemory-policy noeviction`` (``open`` warns otherwise), so a full
Redis refuses writes (``StoreUnavailable``) instead of silently dropping conversations.

Cost: every operation is one round trip (a script, or a script and its index updates in one
pipeline). ``bench/redis_cost.py`` measures the commands and bytes of a chat message.
"""

import asyncio
import collections
import inspect
import json
import logging
import re
import secrets
import time
import urllib.parse

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.asyncio.retry import Retry

from .store import ConversationFull, Entry, Store, StoreUnavailable, new_session_id, size_of

log = logging.getLogger("chat_widget.store")

SESSIONS = "chat:sessions"
CLAIMS = "chat:claims"
TIMEOUT = 2.0  # seconds: connect, read, a subscription's confirmation (a dead Redis never hangs a socket)
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what new_session_id makes, with room


def key(session_id, part):
    return f"chat:{{{session_id}}}:{part}"


def channel(session_id):
    return key(session_id, "live")


def safe_url(url):
    """The URL without its password (in the user part or a ``password=`` parameter), for messages."""
    parts = urllib.parse.urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    username = userinfo.partition(":")[0]
    netloc = f"{username}@{host}" if username else host
    query = urllib.parse.urlencode([(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "password"])
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _json(value):
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# ---- scripts: each touches the keys of one session (KEYS), never an index -------------------------
_HELPERS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- the kept entry number seq, or nil (entries are consecutive: last is the newest one's number)
local function entry_at(list, last, seq)
  local n = redis.call('LLEN', list)
  local index = seq - (last - n + 1)
  if index < 0 or index >= n then return nil end
  return redis.call('LINDEX', list, index)
end
-- KEYS: meta, entries, ids, answered. Appends '[seq,' .. tail, trims to max_entries (forgetting the
-- ids and answers of what it drops) and returns the new entry's number.
local function append(tail, size, touched, max_entries)
  local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
  redis.call('HINCRBY', KEYS[1], 'bytes', size)
  redis.call('HSET', KEYS[1], 'touched', touched)
  local n = redis.call('RPUSH', KEYS[2], '[' .. seq .. ',' .. tail)
  if n > max_entries then
    for _, old in ipairs(redis.call('LPOP', KEYS[2], n - max_entries)) do
      local e = cjson.decode(old)
      local index, field = KEYS[3], e[3]
      if e[2] ~= 'visitor' then index, field = KEYS[4], e[5] end
      if tonumber(redis.call('HGET', index, field)) == e[1] then redis.call('HDEL', index, field) end
    end
  end
  return seq
end
local function expire(ttl)
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
"""

SCRIPTS = {
    # KEYS meta entries ids answered; ARGV id size tail touched cutoff max_bytes(-1: none) max_entries ttl
    # -> {0} no such session | {1, entry} stored before | {2} full | {3, seq} stored now
    "add_message": """
local meta = redis.call('HMGET', KEYS[1], 'touched', 'seq', 'bytes', 'full')
if not meta[1] or tonumber(meta[1]) < tonumber(ARGV[5]) then return {0} end
local stored = redis.call('HGET', KEYS[3], ARGV[1])
if stored then
  local entry = entry_at(KEYS[2], tonumber(meta[2]), tonumber(stored))
  if entry then return {1, entry} end
end
local budget = tonumber(ARGV[6])
if budget >= 0 and (meta[4] == '1' or tonumber(meta[3]) + tonumber(ARGV[2]) > budget) then
  redis.call('HSET', KEYS[1], 'full', '1')
  return {2}
end
local seq = append(ARGV[3], tonumber(ARGV[2]), ARGV[4], tonumber(ARGV[7]))
redis.call('HSET', KEYS[3], ARGV[1], seq)
expire(ARGV[8])
return {3, seq}
""",
    # KEYS meta entries ids answered claims streams; ARGV question reply_id size tail touched cutoff
    # max_entries ttl -> {0} no such session | {1, entry} answered before | {3, seq}. Either way the
    # question's claim and the reply's stream are gone.
    "add_reply": """
local meta = redis.call('HMGET', KEYS[1], 'touched', 'seq')
if not meta[1] or tonumber(meta[1]) < tonumber(ARGV[6]) then return {0} end
redis.call('HDEL', KEYS[5], ARGV[1])
redis.call('HDEL', KEYS[6], ARGV[2])
local answered = redis.call('HGET', KEYS[4], ARGV[1])
if answered then
  local entry = entry_at(KEYS[2], tonumber(meta[2]), tonumber(answered))
  if entry then return {1, entry} end
end
local seq = append(ARGV[4], tonumber(ARGV[3]), ARGV[5], tonumber(ARGV[7]))
redis.call('HSET', KEYS[4], ARGV[1], seq)
expire(ARGV[8])
return {3, seq}
""",
    # KEYS meta entries; ARGV seq -> the entries after seq
    "entries_after": """
local last = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local n = redis.call('LLEN', KEYS[2])
local start = tonumber(ARGV[1]) + 1 - (last - n + 1)
if start < 0 then start = 0 end
if start >= n then return {} end
return redis.call('LRANGE', KEYS[2], start, -1)
""",
    # KEYS answered claims; ARGV question reply_id lang lease_ms holder ttl -> {reply_id, lang} | nil
    "claim": """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return false end
local now = now_ms()
local reply, lang = ARGV[2], ARGV[3]
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then
  local claim = cjson.decode(held)
  if claim.holder ~= ARGV[5] and claim.deadline > now then return false end
  reply, lang = claim.reply, claim.lang
end
redis.call('HSET', KEYS[2], ARGV[1],
  cjson.encode({holder = ARGV[5], reply = reply, lang = lang, deadline = now + tonumber(ARGV[4])}))
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return {reply, lang}
""",
    # KEYS claims; ARGV question holder lease_ms -> 1 extended | 0 not ours (or answered)
    "renew": """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if not held then return 0 end
local claim = cjson.decode(held)
if claim.holder ~= ARGV[2] then return 0 end
claim.deadline = now_ms() + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(claim))
return 1
""",
    # KEYS answered claims; ARGV question -> {0} answered or no claim | {1} lapsed | {2, deadline} live
    "check_claim": """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return {0} end
local held = redis.call('HGET', KEYS[2], ARGV[1])
if not held then return {0} end
local deadline = cjson.decode(held).deadline
if deadline <= now_ms() then return {1} end
return {2, deadline}
""",
    # KEYS the claims index (one key: fine on a cluster too); ARGV limit -> {now_ms, members due}
    "due_claims": """
local now = now_ms()
return {now, redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))}
""",
    # KEYS rate; ARGV tokens per second, burst -> seconds to wait (as a string), "0" when one was taken.
    # The bucket of protocol/ratelimit.py on Redis's clock; the key expires once the bucket is full again.
    "rate": """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens, updated = tonumber(state[1]), tonumber(state[2])
if not tokens then tokens, updated = burst, now end
if now > updated then
  tokens = math.min(burst, tokens + (now - updated) * rate)
  updated = now
end
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'updated', string.format('%.6f', updated))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return string.format('%.6f', wait)
""",
    # KEYS streams; ARGV reply_id stored ttl channel payload
    "stream_start": """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
""",
    # KEYS streams; ARGV reply_id chunk chunk_frame_json channel: the chunk joins the stored partial and
    # is published with its generation and the partial's new length in bytes (a late joiner's dedup).
    "stream_chunk": """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
local gen, length = '', 0
if stored then
  local stream = cjson.decode(stored)
  stream[2].text = stream[2].text .. ARGV[2]
  gen, length = stream[1], #stream[2].text
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(stream))
end
redis.call('PUBLISH', ARGV[4], '[' .. cjson.encode(gen) .. ',' .. length .. ',' .. ARGV[3] .. ']')
""",
}


POOL_SIZE = 64  # Redis connections per instance: every operation is one short round trip

class RedisStore(Store):
    """``RedisStore("redis://host:6379/0", retention=..., max_entries=..., max_bytes=..., clock=...)``;
    ``margin``: seconds Redis keeps a quiet conversation past ``retention`` (instances' clocks differ a
    little; ``find_session`` is what ends a conversation on time)."""

    shared = True

    def __init__(self, url, margin=5.0, timeout=TIMEOUT, **options):
        super().__init__(**options)
        self.url = url
        self.safe_url = safe_url(url)
        self.margin = margin
        self.timeout = timeout
        self.instance_id = secrets.token_urlsafe(12)  # this store's name as a claim holder
        self._redis = None
        self._scripts = {}
        self._offset_ms = 0.0  # Redis TIME minus time.monotonic(), in ms: to estimate claim deadlines
        self._ended = {}       # (session, reply id) whose stream add_reply removed: stream_ended is free
        self._buses = []

    # ---- connection --------------------------------------------------------------------------
    async def open(self):
        # A blocking pool: a burst of sockets (a reconnecting herd after a restart) waits its turn for a
        # connection instead of failing with "Too many connections" (measured: a 4203 in the rolling
        # restart test with the default pool of 100).
        pool = aioredis.BlockingConnectionPool.from_url(
            self.url, max_connections=POOL_SIZE, timeout=self.timeout, decode_responses=True,
            socket_connect_timeout=self.timeout, socket_timeout=self.timeout, health_check_interval=10,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)), client_name="chat-widget")
        self._redis = aioredis.Redis.from_pool(pool)  # owns the pool: aclose() disconnects it
        self._scripts = {name: self._redis.register_script(_HELPERS + source) for name, source in SCRIPTS.items()}
        try:
            await self._redis.ping()
        except (RedisError, OSError) as error:
            raise StoreUnavailable(f"cannot reach Redis at {self.safe_url}: {_describe(error)}") from None
        await self._do(self._load_scripts)
        await self._do(self._measure_time)
        try:
            policy = (await self._redis.config_get("maxmemory-policy")).get("maxmemory-policy")
        except ResponseError:  # CONFIG renamed or refused (managed Redis): nothing to check
            policy = None
        except (RedisError, OSError) as error:
            raise StoreUnavailable(f"Redis at {self.safe_url}: {_describe(error)}") from None
        if policy not in (None, "noeviction"):
            log.warning("Redis at %s has maxmemory-policy %s: when it is full it evicts keys, which silently "
                        "drops conversations; set maxmemory-policy noeviction", self.safe_url, policy)

    async def close(self):
        for bus in self._buses:
            await bus.stop()
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await redis.aclose()

    async def _load_scripts(self):
        pipe = self._redis.pipeline(transaction=False)
        for script in self._scripts.values():
            pipe.script_load(script.script)
        await pipe.execute()

    async def _measure_time(self):
        before = time.monotonic()
        seconds, micros = await self._redis.time()
        self._set_offset(seconds * 1000 + micros / 1000, before)

    def _set_offset(self, redis_ms, sent_at):
        self._offset_ms = redis_ms - (sent_at + time.monotonic()) / 2 * 1000

    def _redis_ms(self):
        """Redis's clock as this process estimates it (index scores only: the scripts read TIME)."""
        return time.monotonic() * 1000 + self._offset_ms

    async def _do(self, run):
        """``await run()``: every Redis error becomes ``StoreUnavailable``; scripts that Redis forgot (it
        restarted) are loaded again and ``run`` is repeated."""
        try:
            try:
                return await run()
            except NoScriptError:
                await self._load_scripts()
                return await run()
        except (RedisError, OSError) as error:
            raise StoreUnavailable(f"Redis at {self.safe_url}: {_describe(error)}") from error

    def _eval(self, target, name, keys, args):
        return target.evalsha(self._scripts[name].sha, len(keys), *keys, *args)

    async def _script(self, name, keys, args):
        return await self._do(lambda: self._eval(self._redis, name, keys, args))

    async def _batch(self, fill):
        """One round trip: ``fill(pipe)`` queues the commands; returns their results."""
        async def run():
            pipe = self._redis.pipeline(transaction=False)
            fill(pipe)
            return await pipe.execute()
        return await self._do(run)

    def _ttl(self):
        return int((self.retention + self.margin) * 1000)

    # ---- the Store interface -----------------------------------------------------------------
    async def create_session(self, origin):
        session_id = new_session_id()
        now = self.clock()

        def fill(pipe):
            pipe.hset(key(session_id, "meta"), mapping={"origin": origin, "touched": repr(now), "seq": 0, "bytes": 0})
            pipe.pexpire(key(session_id, "meta"), self._ttl())
            pipe.zadd(SESSIONS, {session_id: now})
        await self._batch(fill)
        return session_id

    async def find_session(self, session_id, origin):
        if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
            return False
        stored, touched = await self._do(lambda: self._redis.hmget(key(session_id, "meta"), "origin", "touched"))
        return stored == origin and touched is not None and float(touched) >= self.clock() - self.retention

    def _keys(self, session_id, *parts):
        return [key(session_id, part) for part in parts]

    async def add_visitor_message(self, session_id, message_id, text):
        now = self.clock()
        args = [message_id, size_of(text), _json(["visitor", message_id, text, None])[1:], repr(now),
                repr(now - self.retention), -1 if self.max_bytes is None else self.max_bytes, self.max_entries,
                self._ttl()]
        keys = self._keys(session_id, "meta", "entries", "ids", "answered")

        def fill(pipe):
            self._eval(pipe, "add_message", keys, args)
            pipe.zadd(SESSIONS, {session_id: now}, xx=True)
        result = (await self._batch(fill))[0]
        if result[0] == 0:
            raise KeyError(session_id)
        if result[0] == 1:
            return Entry(*json.loads(result[1])), False
        if result[0] == 2:
            raise ConversationFull(session_id)
        return Entry(int(result[1]), "visitor", message_id, text), True

    async def add_reply(self, session_id, reply_id, in_reply_to, text):
        now = self.clock()
        args = [in_reply_to, reply_id, size_of(text), _json(["consultant", reply_id, text, in_reply_to])[1:],
                repr(now), repr(now - self.retention), self.max_entries, self._ttl()]
        keys = self._keys(session_id, "meta", "entries", "ids", "answered", "claims", "streams")

        def fill(pipe):
            self._eval(pipe, "add_reply", keys, args)
            pipe.zrem(CLAIMS, f"{session_id} {in_reply_to}")
            pipe.zadd(SESSIONS, {session_id: now}, xx=True)
        result = (await self._batch(fill))[0]
        if result[0] == 0:
            raise KeyError(session_id)
        # The script removed the reply's stream: the bus's stream_ended that follows needs no round trip.
        self._ended[(session_id, reply_id)] = True
        while len(self._ended) > 1000:
            del self._ended[next(iter(self._ended))]
        if result[0] == 1:
            return Entry(*json.loads(result[1])), False
        return Entry(int(result[1]), "consultant", reply_id, text, in_reply_to), True

    async def entries_after(self, session_id, seq):
        rows = await self._script("entries_after", self._keys(session_id, "meta", "entries"), [seq])
        return [Entry(*json.loads(row)) for row in rows]

    async def last_seq(self, session_id):
        return int(await self._do(lambda: self._redis.hget(key(session_id, "meta"), "seq")) or 0)

    async def sweep(self):
        """Redis expires the conversations themselves; this trims the index of those it no longer counts."""
        cutoff = self.clock() - self.retention
        return await self._do(lambda: self._redis.zremrangebyscore(SESSIONS, "-inf", f"({cutoff!r}"))

    async def session_count(self):
        return await self._do(lambda: self._redis.zcount(SESSIONS, repr(self.clock() - self.retention), "+inf"))

    async def used_bytes(self):
        """Redis's ``used_memory``: everything in it, this store's conversations and anything else."""
        return int((await self._do(lambda: self._redis.info("memory")))["used_memory"])

    async def healthy(self):
        await self._do(self._redis.ping)

    # ---- several instances -------------------------------------------------------------------
    def bus(self):
        bus = RedisBus(self)
        self._buses.append(bus)  # stopped by close(), if its owner did not
        return bus

    async def claim(self, session_id, message_id, reply_id, lang, lease):
        member = f"{session_id} {message_id}"
        deadline = self._redis_ms() + lease * 1000
        args = [message_id, reply_id, lang or "", int(lease * 1000), self.instance_id, self._ttl()]

        def fill(pipe):
            self._eval(pipe, "claim", self._keys(session_id, "answered", "claims"), args)
            # LT: a refused claim must not push a live holder's deadline later (a takeover's newer
            # deadline is corrected by lapsed_claims or the next renew)
            pipe.zadd(CLAIMS, {member: deadline}, lt=True)
        granted = (await self._batch(fill))[0]
        if not granted:
            return None
        return granted[0], granted[1] or None

    async def renew(self, session_id, message_id, lease):
        deadline = self._redis_ms() + lease * 1000

        def fill(pipe):
            self._eval(pipe, "renew", [key(session_id, "claims")], [message_id, self.instance_id, int(lease * 1000)])
            pipe.zadd(CLAIMS, {f"{session_id} {message_id}": deadline}, xx=True)
        return bool((await self._batch(fill))[0])

    async def lapsed_claims(self, limit=50):
        sent = time.monotonic()
        now, members = await self._script("due_claims", [CLAIMS], [limit])
        self._set_offset(int(now), sent)
        if not members:
            return []
        questions = [member.split(" ", 1) for member in members]

        def check(pipe):
            for session_id, message_id in questions:
                self._eval(pipe, "check_claim", self._keys(session_id, "answered", "claims"), [message_id])
        states = await self._batch(check)
        lapsed, gone, live = [], [], {}
        for member, (session_id, message_id), state in zip(members, questions, states):
            if state[0] == 1:
                lapsed.append((session_id, message_id))
            elif state[0] == 2:
                live[member] = int(state[1])
            else:
                gone.append(member)
        if gone or live:
            def tidy(pipe):
                if gone:
                    pipe.zrem(CLAIMS, *gone)
                if live:
                    pipe.zadd(CLAIMS, live, xx=True)
            await self._batch(tidy)
        return lapsed

    async def rate_wait(self, session_id, rate, per, burst):
        wait = await self._script("rate", [key(session_id, "rate")], [repr(float(rate) / float(per)), float(burst)])
        return float(wait)


def _describe(error):
    """One line: the error's class and message."""
    return " ".join(f"{type(error).__name__}: {error}".split())


class _Watcher:
    """A local watcher's state: frames held while ``watch`` reads the snapshot, and for each reply in
    the snapshot, its generation and length (the chunks it already contains are not sent again)."""

    __slots__ = ("held", "streams")

    def __init__(self):
        self.held = []     # None once watch returned
        self.streams = {}  # reply id -> (gen, bytes already sent in the snapshot)

    def accept(self, gen, end, frame):
        """The frame to send, or None (already in the snapshot)."""
        seen = self.streams.get(frame.get("id")) if self.streams else None
        if seen is None:
            return frame
        if gen is not None and gen == seen[0] and end <= seen[1]:
            return None
        if gen is not None or frame.get("type") == "reply":  # past the snapshot: nothing more to compare
            del self.streams[frame["id"]]
        return frame


class RedisBus:
    """The bus of ``bus.py`` across instances, with ``LocalBus``'s methods.

    ``publish`` is a PUBLISH on the session's channel ``chat:{SID}:live``. Each instance holds ONE
    subscriber connection, subscribed to the channels of the sessions watched here (from their first
    local watcher to their last), and a reader task that hands each message to the local watchers.

    A message is a frame in JSON, or for a reply's stream ``[gen, length, frame]``: ``gen`` names one
    ``stream_started`` (a reply taken over after a lapsed claim restarts under the same id with a new
    generation) and ``length`` is the reply's text so far in UTF-8 bytes once this frame is in. A
    watcher that joins mid-reply gets the text so far from the ``streams`` hash, then only the chunks
    that end beyond it: each chunk once, none missing, whatever arrives while ``watch`` reads.

    When the subscriber connection breaks (Redis restarted), the reader reconnects with a short backoff,
    resubscribes, and calls ``on_gap(session_ids)`` (sync or async) with the sessions whose watchers
    may have missed frames in between.
    """

    def __init__(self, store, on_gap=None):
        self.store = store
        self.on_gap = on_gap or (lambda session_ids: None)
        self.watchers = {}       # session id -> {send: _Watcher}
        self._reader = None
        self._conn = None        # the subscriber connection while it works
        self._send_lock = asyncio.Lock()
        self._requested = set()  # channels SUBSCRIBEd on the current connection (and not UNSUBSCRIBEd)
        self._confirmed = set()  # ... and confirmed by Redis
        self._waiting = {}       # channel -> [futures resolved by its confirmation]
        self._missed = set()     # sessions watched when the connection broke
        self._tasks = set()
        self._queues = {}  # session id -> frames received and not yet delivered (_enqueue)

    async def start(self):
        if self._reader is None:
            self._reader = asyncio.create_task(self._read_forever(), name="redis-bus")

    async def stop(self):
        tasks = [task for task in (self._reader, *self._tasks) if task is not None]
        self._reader = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for futures in self._waiting.values():
            for future in futures:
                if not future.done():
                    future.set_exception(StoreUnavailable("the bus stopped"))
        self._waiting.clear()

    # ---- LocalBus's methods ------------------------------------------------------------------
    async def watch(self, session_id, send):
        """``send`` receives the session's frames from now on (every frame published after this returns);
        returns what ``send`` should receive first: the replies streaming now (``reply_start`` frames
        with their text so far), then any other frame published while this was reading them."""
        await self.start()
        watcher = _Watcher()
        self.watchers.setdefault(session_id, {})[send] = watcher
        try:
            await self._subscribed(channel(session_id))
            stored = await self.store._do(lambda: self.store._redis.hgetall(key(session_id, "streams")))
        except BaseException:
            self.unwatch(session_id, send)
            raise
        first = []
        for reply_id, value in stored.items():
            gen, frame = json.loads(value)
            watcher.streams[reply_id] = (gen, len(frame["text"].encode("utf-8")))
            first.append(frame)
        held, watcher.held = watcher.held, None
        started = set(watcher.streams)
        for gen, end, frame in held:
            if frame.get("type") == "reply_start":
                started.add(frame["id"])
            elif gen is not None and frame["id"] not in started:
                continue  # a chunk of a stream that ended before the snapshot: its reply frame follows
            frame = watcher.accept(gen, end, frame)
            if frame is not None:
                first.append(frame)
        return first

    def unwatch(self, session_id, send):
        watchers = self.watchers.get(session_id)
        if watchers is None:
            return
        watchers.pop(send, None)
        if not watchers:
            del self.watchers[session_id]
            self._spawn(self._unsubscribe(session_id))

    async def publish(self, session_id, frame):
        await self.store._do(lambda: self.store._redis.publish(channel(session_id), _json(frame)))

    async def deliver(self, session_id, frame):
        """To this process's watchers of the session."""
        await self._dispatch(session_id, (None, None, frame))

    async def stream_started(self, session_id, frame):
        gen = secrets.token_hex(4)
        text = frame.get("text", "")
        await self.store._script("stream_start", [key(session_id, "streams")], [
            frame["id"], _json([gen, frame]), self.store._ttl(), channel(session_id),
            _json([gen, len(text.encode("utf-8")), frame])])

    async def stream_chunk(self, session_id, frame):
        await self.store._script("stream_chunk", [key(session_id, "streams")], [
            frame["id"], frame["text"], _json(frame), channel(session_id)])

    def stream_abandoned(self, session_id, reply_id):
        """Kept: the instance that takes the question over restarts the stream under the same reply id
        (and until then a late watcher sees what was written)."""

    async def stream_ended(self, session_id, reply_id):
        if self.store._ended.pop((session_id, reply_id), None):
            return
        await self.store._do(lambda: self.store._redis.hdel(key(session_id, "streams"), reply_id))

    # ---- delivery ----------------------------------------------------------------------------
    def _enqueue(self, session_id, item):
        """The reader never waits for a socket: each session's frames go out in order from a task of
        their own, so a visitor who stops reading holds up only their own conversation (as with
        LocalBus), not every conversation of the instance."""
        queue = self._queues.get(session_id)
        if queue is not None:
            queue.append(item)
            return
        self._queues[session_id] = collections.deque([item])
        self._spawn(self._deliver_queued(session_id))

    async def _deliver_queued(self, session_id):
        queue = self._queues[session_id]
        try:
            while queue:
                await self._dispatch(session_id, queue.popleft())
        finally:
            del self._queues[session_id]

    async def _dispatch(self, session_id, item):
        for send, watcher in list(self.watchers.get(session_id, {}).items()):
            if watcher.held is not None:
                watcher.held.append(item)
                continue
            frame = watcher.accept(*item)
            if frame is None:
                continue
            try:
                await send(frame)
            except Exception:  # a socket closing under us; its own handler cleans up
                self.unwatch(session_id, send)

    def _spawn(self, coroutine):
        try:
            task = asyncio.get_running_loop().create_task(coroutine)
        except RuntimeError:  # no loop (shutting down): the connection goes, and its subscriptions with it
            coroutine.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- subscriptions -----------------------------------------------------------------------
    async def _subscribed(self, name):
        """Returns once Redis confirmed the subscription to channel ``name`` (StoreUnavailable after the
        store's timeout: Redis is down, the reader keeps trying)."""
        if name in self._confirmed:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(name, []).append(future)
        try:
            async with self._send_lock:
                conn = self._conn
                if conn is not None and name not in self._requested:
                    self._requested.add(name)
                    try:
                        await conn.send_command("SUBSCRIBE", name, check_health=False)
                    except (RedisError, OSError):
                        pass  # the reader sees the break and subscribes every watched channel again
            await asyncio.wait_for(future, self.store.timeout)
        except asyncio.TimeoutError:
            raise StoreUnavailable(f"Redis at {self.store.safe_url} did not confirm a subscription") from None
        finally:
            futures = self._waiting.get(name, [])
            if future in futures:
                futures.remove(future)
            if not futures:
                self._waiting.pop(name, None)

    async def _unsubscribe(self, session_id):
        name = channel(session_id)
        async with self._send_lock:
            if session_id in self.watchers or name not in self._requested:
                return  # watched again meanwhile, or the connection broke (nothing to undo)
            self._requested.discard(name)
            self._confirmed.discard(name)
            conn = self._conn
            if conn is not None:
                try:
                    await conn.send_command("UNSUBSCRIBE", name, check_health=False)
                except (RedisError, OSError):
                    pass

    def _new_connection(self):
        """A connection of its own (not the pool's), with the pool's settings, that never PINGs by itself."""
        if self.store._redis is None:
            raise RedisConnectionError("the store is closed")
        pool = self.store._redis.connection_pool
        options = {**pool.connection_kwargs, "health_check_interval": 0, "protocol": 2}
        for name in ("maint_notifications_config", "maint_notifications_pool_handler"):
            options.pop(name, None)  # RESP3's; RESP2 reads messages as replies, in order with confirmations
        return pool.connection_class(**options)

    async def _read_forever(self):
        delay = 0.05
        while True:
            conn = None
            try:
                conn = self._new_connection()
                await conn.connect()
                async with self._send_lock:
                    names = [channel(session_id) for session_id in self.watchers]
                    if names:
                        await conn.send_command("SUBSCRIBE", *names, check_health=False)
                    self._conn, self._requested = conn, set(names)
                    self._missed &= set(self.watchers)
                if self._missed:
                    log.info("bus reconnected to Redis at %s", self.store.safe_url)
                delay = 0.05
                await self._read(conn)
            except (RedisError, OSError) as error:
                if conn is not None and self._conn is conn:
                    log.warning("bus lost Redis at %s (%s); reconnecting", self.store.safe_url, _describe(error))
                else:
                    log.debug("bus cannot reach Redis at %s: %s", self.store.safe_url, _describe(error))
            finally:
                if conn is not None and self._conn is conn:
                    self._missed |= set(self.watchers)  # frames published until resubscribed are lost to them
                self._conn = None
                self._requested.clear()
                self._confirmed.clear()
                if conn is not None:
                    await conn.disconnect(nowait=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _read(self, conn):
        """Messages until the connection breaks; a PING after 5 quiet seconds, which must be answered."""
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = None
        while True:
            message = await conn.read_response(timeout=1.0, disconnect_on_error=False)
            now = loop.time()
            if message is None:
                if pinged is not None and now - pinged > self.store.timeout:
                    raise RedisConnectionError("no answer to PING on the subscriber connection")
                if pinged is None and now - heard > 5.0:
                    async with self._send_lock:
                        await conn.send_command("PING", check_health=False)
                    pinged = now
                continue
            heard, pinged = now, None
            if not isinstance(message, list) or len(message) < 3:
                continue  # PONG
            kind, name, data = message[0], message[1], message[2]
            if kind == "message":
                self._enqueue(name[len("chat:{"):-len("}:live")], _parse(data))
            elif kind == "subscribe" and name in self._requested:
                self._confirmed.add(name)
                for future in self._waiting.get(name, ()):
                    if not future.done():
                        future.set_result(None)
                self._after_resubscribe()

    def _after_resubscribe(self):
        """Once every session watched across a break is subscribed again: ``on_gap`` for them."""
        if not self._missed:
            return
        watched = [session_id for session_id in self._missed if session_id in self.watchers]
        if any(channel(session_id) not in self._confirmed for session_id in watched):
            return
        self._missed = set()
        if watched:
            self._spawn(self._call_on_gap(watched))

    async def _call_on_gap(self, session_ids):
        try:
            result = self.on_gap(session_ids)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("bus on_gap failed")


def _parse(payload):
    """``(gen, length, frame)`` from a channel message; gen and length are None for a plain frame."""
    if payload.startswith("["):
        gen, length, frame = json.loads(payload)
        return gen, length, frame
    return None, None, json.loads(payload)

