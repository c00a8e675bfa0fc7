"""Several instances behind nginx, one Redis: sockets held, chat messages per second and round trip, Redis
operations and bytes per chat message; against one instance on SQLite without nginx, in the same run.

Configurations (``--configs``), each started fresh for every repeat, interleaved:

    sqlite-direct   one ``chat-widget serve`` on the default store (SQLite, a temporary file), no proxy:
                    the baseline
    redis-direct    one instance on Redis, no proxy (the cost of Redis alone)
    redis-1/2/3     K instances on one Redis behind the shipped deploy/nginx.conf (tests/nginx.py's
                    ``Nginx.deployed``), round robin

Every instance runs ``chat-widget serve --store ... --trusted-proxy 127.0.0.1`` with the budgets of
e2e/server_process.py's ``ONE_ADDRESS_MANY_VISITORS``, ``CHAT_WIDGET_MAX_CONNECTIONS_PER_ADDRESS`` large and
the per-session message rate opened (``CHAT_WIDGET_MESSAGE_RATE``: the bucket's Redis script still runs
for every message, so the cost is the same; only the refusals are gone). The default ``knowledge``
consultant answers (``knowledge.md``); its answers stream sentence by sentence with ``asyncio.sleep(0)``
between chunks, so a reply's latency is the consultant's work and queueing, and is measured apart from
the ack.

Each client socket has a source address of its own (127.2.x.y, like bench/capacity.py's 127.1.x.y):
nginx appends it to ``X-Forwarded-For`` and the instances read it there. With every client on
127.0.0.1 the consultant would answer one question at a time for the whole load (it answers one at a
time per address, ``Conversations._turn``), and the reply latency would measure that queue.

Phases, per configuration (the load process's garbage collector off while measuring, as in capacity.py):

a. **held**: N sockets (``--sockets``) each ``hello`` → ``welcome`` (a conversation each), through nginx;
   memory per socket = VmRSS growth of the instances (and of nginx's workers) ÷ sockets held, over a
   warmed-up start; Redis ``used_memory`` growth per socket. Then **heartbeat**: every socket pings every
   ``--ping-interval`` s (the widget's 4 s) for ``--idle-duration`` s: ping round trip, and CPU per
   1,000 idle sockets for the instances, nginx and Redis (each read from /proc).
b. **chat**: C of them (``--chat-clients``) send visitor messages at a fixed total rate (``--chat-rate``,
   open loop: a message goes when due, answered or not) for ``--chat-duration`` s, through the whole
   protocol (rate bucket in the store, durable write, ack, consultant reply streamed and stored): round
   trip = message sent → ``ack``; reply = message sent → the stored ``reply`` frame. Redis commands and
   bytes per message from ``INFO`` deltas (the background measured during the heartbeat taken off),
   compared with bench/redis_cost.py's figure measured in the same run.
c. **saturation**: S other sockets (``--sat-clients``) each keep ``--sat-window`` messages in flight (a
   message is done when its reply arrives) for ``--sat-duration`` s: messages acknowledged and answered
   per second, and per CPU-second of the instances.

The machine has 2 cores: the instances, nginx, Redis and this load process share them, and nothing is
pinned. Pinning the load to one core (as capacity.py does for one server) would leave one core for up to
five processes and measure how that core is split; unpinned, the CPU share printed for every process
says who had the cores, and the per-CPU-second figures are the ones that carry to a bigger machine.

    .venv/bin/python bench/cluster.py                      # N = 2000, 3 repeats of every configuration
    .venv/bin/python bench/cluster.py --configs sqlite-direct,redis-3 --repeats 1
    .venv/bin/python bench/cluster.py --smoke              # tiny sizes, short phases (CI smoke)
    .venv/bin/python bench/cluster.py --gc-log             # also: the instances' full collections in the chat
    .venv/bin/python bench/cluster.py --report bench/results/cluster-latest.json   # the tables again

Writes bench/results/cluster-<time>.json (and cluster-latest.json).
"""

import argparse
import asyncio
import atexit
import gc
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import redis.asyncio as aioredis
from websockets.asyncio.client import connect

import capacity
from capacity import ORIGIN, close_all, med, percentile, spread
from common import ROOT, raise_nofile, table, write_results
from server_process import ServerProcess  # e2e/server_process.py (common puts e2e/ on the path)

sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from nginx import DeployedNginx  # noqa: E402  (tests/nginx.py)
from redis_server import RedisServer  # noqa: E402  (tests/redis_server.py)
import redis_cost  # noqa: E402  (bench/redis_cost.py)

CONFIGS = {  # name -> (store, instances, behind nginx)
    "sqlite-direct": ("sqlite", 1, False),
    "redis-direct": ("redis", 1, False),
    "redis-1": ("redis", 1, True),
    "redis-2": ("redis", 2, True),
    "redis-3": ("redis", 3, True),
}
BASELINE = "sqlite-direct"
SERVER_ENV = {
    "CHAT_WIDGET_MAX_CONNECTIONS_PER_ADDRESS": "1000000",
    "CHAT_WIDGET_MESSAGE_RATE": "100000", "CHAT_WIDGET_MESSAGE_PERIOD": "1", "CHAT_WIDGET_MESSAGE_BURST": "100000",
}
# Questions the demo's knowledge.md answers (139 to 376 characters, 2 to 5 chunks); the first is
# bench/redis_cost.py's question.
QUESTIONS = [
    redis_cost.QUESTION,
    "When are you open on Saturday?",
    "Can I return a lamp I bought last week?",
    "Which payment methods do you accept?",
    "How do I clean my wool rug?",
    "How much does a custom rug cost?",
]
# With --gc-log, capacity.GC_LOG on the instances' PYTHONPATH: one line per full collection, its pause and
# when it ended, so pauses can be set against latencies.
GC_LOG = capacity.GC_LOG
GC_PAUSE = re.compile(r"gc-pause wall ([0-9.]+) ms .* at ([0-9.]+)")
# Commands that only touch the two global indexes (chat:sessions, chat:claims): one slot, one shard in a cluster
INDEX_COMMANDS = ("zadd", "zrem", "zrangebyscore", "zcount", "zremrangebyscore")


# ---- processes ---------------------------------------------------------------------------------------
def proc_cpu(pid):
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as listing:
            return [int(p) for p in listing.read().split()]
    except OSError:
        return []


class BenchNginx(DeployedNginx):
    """The shipped deploy/nginx.conf exactly as tests/nginx.py runs it, in a main configuration sized as
    docs/deploy.md says a deployment must be (``worker_rlimit_nofile``, ``worker_connections``): the
    tests' ``worker_connections 1024`` holds only about 500 proxied sockets."""

    def __init__(self, upstream_ports, workers=1, connections=16384):
        super().__init__(upstream_ports)
        self.workers, self.connections = workers, connections

    def _write_config(self):
        super()._write_config()
        path = self.tmp / "nginx.conf"
        text = path.read_text()
        nofile = raise_nofile(20_000)[1]
        sized = text.replace("worker_processes 1;", f"worker_processes {self.workers};\n"
                             f"worker_rlimit_nofile {nofile};").replace(
            "worker_connections 1024;", f"worker_connections {min(self.connections, nofile - 100)};")
        if sized.count("worker_rlimit_nofile") != 1 or "worker_connections 1024;" in sized:
            raise RuntimeError("tests/nginx.py's main configuration changed shape: update BenchNginx")
        path.write_text(sized)

    def workers_pids(self):
        return children(self.process.pid) if self.process else []


class Cluster:
    """One configuration running: its instances (and nginx); the URL clients use."""

    def __init__(self, name, redis, env=None):
        self.name = name
        self.env = {**SERVER_ENV, **(env or {})}
        self.store, self.count, self.proxied = CONFIGS[name]
        self.redis = redis
        self.instances, self.nginx, self.tmp = [], None, None

    def start(self):
        if self.store == "sqlite":
            self.tmp = tempfile.mkdtemp(prefix="chat-bench-sqlite-")
            store = os.path.join(self.tmp, "chat.sqlite3")
        else:
            store = self.redis.url(0)
        self.instances = [ServerProcess("--store", store, "--trusted-proxy", "127.0.0.1", "--allow-origin", ORIGIN,
                                        "--metrics-allow", "127.0.0.1", "--log-level", "warning", env=self.env)
                          for _ in range(self.count)]
        try:
            with ThreadPoolExecutor(self.count) as starting:  # side by side: each takes about 0.8 s
                list(starting.map(lambda server: server.start(timeout=30), self.instances))
            if self.proxied:
                self.nginx = BenchNginx([s.port for s in self.instances]).start()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def url(self):
        port = self.nginx.port if self.nginx else self.instances[0].port
        return f"ws://127.0.0.1:{port}/ws?v=1"

    def pids(self):
        """name -> pid of every process whose CPU is counted (instances, nginx's workers, Redis)."""
        pids = {f"instance{n + 1}": s.process.pid for n, s in enumerate(self.instances)}
        if self.nginx:
            pids.update({f"nginx{n + 1}": pid for n, pid in enumerate(self.nginx.workers_pids())})
        if self.store == "redis":
            pids["redis"] = self.redis.process.pid
        return pids

    def rss(self):
        """(instances' VmRSS, nginx workers' VmRSS) in KiB, each a list."""
        return ([proc_rss_kib(s.process.pid) for s in self.instances],
                [proc_rss_kib(pid) for pid in (self.nginx.workers_pids() if self.nginx else [])])

    def open_sockets(self):
        """Open WebSockets per instance, from each instance's /metrics (None where it cannot be read)."""
        counts = []
        for server in self.instances:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as answer:
                    text = answer.read().decode()
                found = re.search(r'^chat_widget_open_connections\{transport="websocket"\} (\S+)', text, re.M)
                counts.append(int(float(found.group(1))) if found else None)
            except OSError:
                counts.append(None)
        return counts

    def gc_pauses(self, start, end):
        """Full-collection pauses (ms) that ended between ``start`` and ``end`` in any instance (--gc-log)."""
        pauses = []
        for server in self.instances:
            for line in list(server.output):
                found = GC_PAUSE.search(line)
                if found and start <= float(found.group(2)) <= end:
                    pauses.append(float(found.group(1)))
        return pauses

    def stop(self):
        for server in self.instances:  # all at once: each drains its (already closed) sockets
            if server.process and server.process.poll() is None:
                try:
                    os.killpg(server.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for server in self.instances:
            server.stop()
        if self.nginx:
            self.nginx.stop()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


class CpuMeter:
    """CPU seconds of the cluster's processes and of this load process between ``start`` and ``stop``."""

    def __init__(self, cluster):
        self.cluster = cluster

    def start(self):
        self.pids = self.cluster.pids()
        self.before = {name: proc_cpu(pid) for name, pid in self.pids.items()}
        self.own, self.wall = time.process_time(), time.perf_counter()

    def stop(self):
        """{"instances", "nginx", "redis", "load"}: CPU seconds used; and the wall time."""
        used = {name: proc_cpu(pid) - self.before[name] for name, pid in self.pids.items()}
        groups = {"instances": 0.0, "nginx": 0.0, "redis": 0.0}
        for name, seconds in used.items():
            groups["instances" if name.startswith("instance") else "nginx" if name.startswith("nginx") else "redis"] += seconds
        groups["load"] = time.process_time() - self.own
        return groups, time.perf_counter() - self.wall


# ---- Redis accounting --------------------------------------------------------------------------------
async def redis_snapshot(raw):
    info = await raw.info("all")
    return {
        "commands": {name[len("cmdstat_"):]: stats["calls"] for name, stats in info.items()
                     if name.startswith("cmdstat_")},
        "processed": info["total_commands_processed"], "net_in": info["total_net_input_bytes"],
        "net_out": info["total_net_output_bytes"], "used_memory": info["used_memory_dataset"],
        "aof": info.get("aof_current_size", 0), "channels": info.get("pubsub_channels", 0),
    }


def redis_delta(before, after, overhead):
    """What happened between two snapshots, without the INFO calls themselves."""
    commands = {name: calls - before["commands"].get(name, 0) for name, calls in after["commands"].items()
                if name != "info" and calls - before["commands"].get(name, 0)}
    return {"commands": commands, "processed": after["processed"] - before["processed"] - 1,
            "net_in": max(0, after["net_in"] - before["net_in"] - overhead[0]),
            "net_out": max(0, after["net_out"] - before["net_out"] - overhead[1]),
            "used_memory": after["used_memory"] - before["used_memory"],
            "aof": after["aof"] - before["aof"] if after["aof"] >= before["aof"] else None}


def per_unit(delta, count, background=None, seconds=0.0):
    """A delta divided by ``count`` (messages, sockets), after taking off ``background`` per second."""
    if not count:
        return None
    background = background or {"commands": {}, "processed": 0, "net_in": 0, "net_out": 0}
    commands = {}
    for name, calls in delta["commands"].items():
        value = (calls - background["commands"].get(name, 0) * seconds) / count
        if value > 0.005:
            commands[name] = value
    return {"commands": commands, "calls": sum(commands.values()),
            "processed": (delta["processed"] - background["processed"] * seconds) / count,
            "net_in": (delta["net_in"] - background["net_in"] * seconds) / count,
            "net_out": (delta["net_out"] - background["net_out"] * seconds) / count,
            "used_memory": delta["used_memory"] / count,
            "aof": delta["aof"] / count if delta["aof"] is not None else None,
            "index_calls": sum(v for k, v in commands.items() if k in INDEX_COMMANDS)}


def rate_of(delta, seconds):
    return {"commands": {k: v / seconds for k, v in delta["commands"].items()},
            "processed": delta["processed"] / seconds, "net_in": delta["net_in"] / seconds,
            "net_out": delta["net_out"] / seconds}


# ---- clients -----------------------------------------------------------------------------------------
_addresses = itertools.count()


def source_address():
    """A loopback source address of its own for each client socket (127.2.0.0 and up), never reused in a run."""
    index = next(_addresses)
    return f"127.{2 + index // 65536}.{index // 256 % 256}.{index % 256}"


class Phase:
    """What the visitors' frames told during one phase: round trips and counts, timestamped."""

    def __init__(self):
        self.pings, self.acks, self.firsts, self.replies = [], [], [], []  # (done at, ms)
        self.reply_chars, self.chunks, self.sent = [], 0, 0
        self.errors = {}
        self.closed = {}  # sockets found closed when sending, by close code

    async def attempt(self, sending):
        """Send; False (and counted) when the socket was closed under the client."""
        try:
            await sending
            return True
        except Exception as error:  # noqa: BLE001 - counted and reported
            rcvd = getattr(error, "rcvd", None)
            key = str(rcvd.code) if rcvd is not None else type(error).__name__
            self.closed[key] = self.closed.get(key, 0) + 1
            return False

    def on_frame(self, visitor, frame, now):
        kind = frame.get("type")
        if kind == "pong":
            if isinstance(frame.get("t"), float):
                self.pings.append((now, (now - frame["t"]) * 1000))
        elif kind == "ack":
            sent = visitor.sent.get(frame.get("id"))
            if sent is not None:
                self.acks.append((now, (now - sent) * 1000))
                visitor.acked.add(frame["id"])
        elif kind == "reply_start":
            visitor.replies[frame["id"]] = frame.get("in_reply_to")
            sent = visitor.sent.get(frame.get("in_reply_to"))
            if sent is not None:
                self.firsts.append((now, (now - sent) * 1000))
        elif kind == "reply_chunk":
            self.chunks += 1
        elif kind == "reply":
            visitor.replies.pop(frame.get("id"), None)
            sent = visitor.sent.pop(frame.get("in_reply_to"), None)
            if sent is not None:
                self.replies.append((now, (now - sent) * 1000))
                self.reply_chars.append(len(frame.get("text", "")))
                visitor.done()
        elif kind == "error":
            code = frame.get("code", "?")
            self.errors[code] = self.errors.get(code, 0) + 1
            if visitor.sent.pop(frame.get("id"), None) is not None:
                visitor.done()


class Visitor:
    """One client socket after ``welcome``; a reader task hands every frame to the current phase."""

    def __init__(self, connection, session):
        self.connection, self.session = connection, session
        self.phase = None
        self.sent = {}     # message id -> perf_counter when sent, until its reply
        self.replies = {}  # reply id -> message id
        self.acked = set()
        self.window = None
        self.messages = 0
        self._ids = itertools.count(1)
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self):
        try:
            async for data in self.connection:
                now = time.perf_counter()
                if self.phase is not None:
                    self.phase.on_frame(self, json.loads(data), now)
        except Exception:  # noqa: BLE001 - the socket closed: counted as missing answers
            pass

    async def ask(self, text):
        message_id = f"m{next(self._ids)}"
        self.sent[message_id] = time.perf_counter()
        self.messages += 1
        await self.connection.send(json.dumps({"type": "message", "id": message_id, "text": text}))

    async def ping(self):
        await self.connection.send('{"type":"ping","t":%r}' % time.perf_counter())

    def done(self):
        if self.window is not None:
            self.window.release()


async def open_visitor(url):
    connection = await connect(url, origin=ORIGIN, proxy=None, open_timeout=30, ping_interval=None,
                               close_timeout=1, max_queue=None, local_addr=(source_address(), 0))
    await connection.send('{"type":"hello"}')
    welcome = json.loads(await asyncio.wait_for(connection.recv(), 30))
    if welcome.get("type") != "welcome":
        await connection.close()
        raise RuntimeError(f"no welcome: {welcome}")
    return Visitor(connection, welcome["session"])


async def open_many(url, count, concurrency=200):
    """N visitors, at most ``concurrency`` handshakes at once; (visitors, errors, seconds)."""
    return await capacity.open_many(url, count, concurrency, open_one=open_visitor)


def close_visitors(visitors):
    for visitor in visitors:
        visitor.reader.cancel()
    close_all([v.connection for v in visitors])


_questions = itertools.cycle(QUESTIONS)


async def settle(visitors, timeout):
    """Until every message sent has its reply (or ``timeout``); how many are still missing."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline and any(v.sent for v in visitors):
        await asyncio.sleep(0.05)
    return sum(len(v.sent) for v in visitors)


def unanswered(visitors):
    """The messages still without a reply after ``settle``: what the client saw of each."""
    found = []
    for visitor in visitors:
        started = set(visitor.replies.values())
        for message_id in visitor.sent:
            found.append({"session": visitor.session[:8], "id": message_id, "acked": message_id in visitor.acked,
                          "reply_started": message_id in started, "open": visitor.connection.state.name == "OPEN"})
    return found


# ---- phases ------------------------------------------------------------------------------------------
async def paced(visitors, interval, duration, act):
    """Every visitor does ``act(visitor)`` every ``interval`` s (random phase) for ``duration`` s, open
    loop: the next one is due whether or not the last was answered."""
    phase = Phase()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration

    async def client(visitor):
        visitor.phase = phase
        await asyncio.sleep(random.uniform(0, interval))
        due = loop.time()
        while loop.time() < deadline:
            if not await phase.attempt(act(visitor)):
                return
            phase.sent += 1
            due += interval
            await asyncio.sleep(max(0.0, min(due, deadline) - loop.time()))

    await asyncio.gather(*(client(v) for v in visitors))
    return phase


async def heartbeat(visitors, interval, duration):
    """Every visitor pings every ``interval`` s, as the widget does while connected."""
    phase = await paced(visitors, interval, duration, lambda visitor: visitor.ping())
    await asyncio.sleep(0.2)  # the last pongs
    return phase


async def chat(visitors, rate, duration):
    """Each visitor sends a message every len(visitors)/rate s, whether or not answered."""
    started = time.perf_counter()
    phase = await paced(visitors, len(visitors) / rate, duration, lambda visitor: visitor.ask(next(_questions)))
    phase.missing = await settle(visitors, 15)
    phase.unanswered = unanswered(visitors)
    phase.span = (started, started + duration)
    return phase


async def saturate(visitors, window, duration):
    """Closed loop: each visitor keeps ``window`` messages in flight, a message leaving it with its reply."""
    phase = Phase()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration

    async def client(visitor):
        visitor.phase = phase
        visitor.window = asyncio.Semaphore(window)
        while True:
            await visitor.window.acquire()
            if loop.time() >= deadline or not await phase.attempt(visitor.ask(next(_questions))):
                return
            phase.sent += 1

    started = time.perf_counter()
    tasks = [asyncio.ensure_future(client(v)) for v in visitors]
    await asyncio.wait(tasks, timeout=duration + 30)
    for task in tasks:
        task.cancel()
    phase.span = (started, started + duration)
    phase.missing = await settle(visitors, 15)
    phase.unanswered = unanswered(visitors)
    for visitor in visitors:
        visitor.window = None
    return phase


def within(samples, span):
    return [ms for at, ms in samples if span[0] <= at <= span[1]]


def quantiles(values):
    return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99), "max": max(values) if values else None,
            "n": len(values)}


# ---- one configuration -------------------------------------------------------------------------------
async def measure(name, redis, raw, args):
    cluster = Cluster(name, redis, args.server_env)
    if CONFIGS[name][0] == "redis":
        await raw.flushall()
    cluster.start()
    result = {"config": name, "instances": cluster.count, "proxied": cluster.proxied, "store": cluster.store}
    visitors = []
    try:
        # Warm up: a few visitors per instance ask and get answered (imports, the consultant's index, the
        # Redis pool's first connections), then go.
        warm, _, _ = await open_many(cluster.url, 8 * cluster.count)
        phase = Phase()
        for visitor in warm:
            visitor.phase = phase
            await visitor.ask(QUESTIONS[0])
        await settle(warm, 10)
        close_visitors(warm)
        await asyncio.sleep(args.pause)
        gc.collect()

        first = await redis_snapshot(raw)
        overhead_snapshot = await redis_snapshot(raw)
        overhead = (overhead_snapshot["net_in"] - first["net_in"], overhead_snapshot["net_out"] - first["net_out"])

        # a. held
        rss_before = cluster.rss()
        before = await redis_snapshot(raw)
        visitors, errors, open_seconds = await open_many(cluster.url, args.sockets)
        await asyncio.sleep(args.pause)
        rss_after = cluster.rss()
        opened = redis_delta(before, await redis_snapshot(raw), overhead)
        held = len(visitors)
        per_instance = await asyncio.to_thread(cluster.open_sockets)
        if any(count is None for count in per_instance):
            per_instance = [held / cluster.count] * cluster.count
        growth = [after - before for before, after in zip(rss_before[0], rss_after[0])]
        nginx_growth = sum(rss_after[1]) - sum(rss_before[1])
        result["held"] = {
            "sockets": held, "errors": errors, "open_seconds": open_seconds, "per_instance": per_instance,
            "rss_kib_before": rss_before, "rss_kib_after": rss_after,
            "kib_per_socket": sum(growth) / held if held else None,
            "kib_per_socket_each": [g / n if n else None for g, n in zip(growth, per_instance)],
            "nginx_kib_per_socket": nginx_growth / held if held and cluster.nginx else None,
            "redis_bytes_per_socket": opened["used_memory"] / held if held and cluster.store == "redis" else None,
            "redis_commands_per_socket": per_unit(opened, held)["calls"] if held and cluster.store == "redis" else None,
        }

        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            # a. heartbeat: the held sockets ping as idle widgets do
            meter = CpuMeter(cluster)
            before = await redis_snapshot(raw)
            meter.start()
            began = time.perf_counter()
            phase = await heartbeat(visitors, args.ping_interval, args.idle_duration)
            cpu, wall = meter.stop()
            pauses = cluster.gc_pauses(began, time.perf_counter()) if args.gc_log else None
            idle = redis_delta(before, await redis_snapshot(raw), overhead)
            background = rate_of(idle, wall)
            pings = [ms for _, ms in phase.pings]
            result["heartbeat"] = {
                "pings_sent": phase.sent, "closed": phase.closed, "gc_pauses_ms": pauses, "pongs": len(pings), "pings_per_s": len(pings) / wall, "rtt_ms": quantiles(pings),
                "cpu_seconds": cpu, "wall": wall,
                "cpu_percent_per_1000": {k: v / wall / held * 100_000 for k, v in cpu.items()} if held else None,
                "cpu_us_per_ping": {k: v / len(pings) * 1e6 for k, v in cpu.items()} if pings else None,
                "redis_background_per_s": background,
            }

            # b. chat at a fixed rate
            talkers = visitors[:min(args.chat_clients, held)]
            before = await redis_snapshot(raw)
            meter.start()
            phase = await chat(talkers, args.chat_rate, args.chat_duration)
            cpu, wall = meter.stop()
            delta = redis_delta(before, await redis_snapshot(raw), overhead)
            answered = len(phase.replies)
            acks = [ms for _, ms in phase.acks]
            pauses = cluster.gc_pauses(phase.span[0], time.perf_counter()) if args.gc_log else None
            result["chat"] = {
                "clients": len(talkers), "offered_per_s": args.chat_rate, "sent": phase.sent, "closed": phase.closed,
                "unanswered": phase.unanswered, "acked": len(acks),
                "answered": answered, "missing": phase.missing, "errors": phase.errors,
                "acked_per_s": len(within(phase.acks, phase.span)) / args.chat_duration,
                "ack_ms": quantiles(acks), "first_chunk_ms": quantiles([ms for _, ms in phase.firsts]),
                "reply_ms": quantiles([ms for _, ms in phase.replies]),
                "reply_chars": sum(phase.reply_chars) / answered if answered else None,
                "gc_pauses_ms": pauses, "gc_pause_max_ms": max(pauses, default=0.0) if pauses is not None else None,
                "chunks_per_reply": phase.chunks / answered if answered else None,
                "messages_per_conversation": sum(v.messages for v in talkers) / len(talkers) if talkers else None,
                "cpu_seconds": cpu, "wall": wall,
                "cpu_ms_per_message": {k: v / answered * 1000 for k, v in cpu.items()} if answered else None,
                "redis_per_message": per_unit(delta, answered, background, wall) if cluster.store == "redis" else None,
            }

            # c. saturation, on sockets that did not chat in b
            rest = visitors[len(talkers):] or visitors
            senders = rest[:min(args.sat_clients, len(rest))]
            before = await redis_snapshot(raw)
            meter.start()
            phase = await saturate(senders, args.sat_window, args.sat_duration)
            cpu, wall = meter.stop()
            delta = redis_delta(before, await redis_snapshot(raw), overhead)
            done = within(phase.replies, phase.span)
            acked = within(phase.acks, phase.span)
            answered = len(phase.replies)
            result["saturation"] = {
                "clients": len(senders), "window": args.sat_window, "sent": phase.sent, "closed": phase.closed,
                "unanswered": phase.unanswered, "missing": phase.missing,
                "errors": phase.errors, "answered_per_s": len(done) / args.sat_duration,
                "acked_per_s": len(acked) / args.sat_duration, "ack_ms": quantiles(acked),
                "reply_ms": quantiles(done), "cpu_seconds": cpu, "wall": wall,
                "cpu_share": {k: v / wall for k, v in cpu.items()},
                "answered_per_instance_cpu_s": answered / cpu["instances"] if cpu["instances"] else None,
                "messages_per_conversation": sum(v.messages for v in senders) / len(senders) if senders else None,
                "redis_per_message": per_unit(delta, answered, background, wall) if cluster.store == "redis" else None,
            }
        finally:
            gc.enable()
            gc.unfreeze()
    finally:
        close_visitors(visitors)
        await asyncio.sleep(0.2)
        cluster.stop()
    return result


def line(result):
    held, beat, talk, sat = result["held"], result["heartbeat"], result["chat"], result["saturation"]
    share = sat["cpu_share"]
    return (f"{result['config']:13} held {held['sockets']:>5} {held['kib_per_socket'] or 0:5.1f} KiB/socket"
            + (f" nginx {held['nginx_kib_per_socket']:4.1f}" if held["nginx_kib_per_socket"] is not None else "")
            + f" | ping p99 {beat['rtt_ms']['p99'] or 0:6.1f} ms | chat {talk['acked_per_s']:5.0f}/s ack p50 "
            f"{talk['ack_ms']['p50'] or 0:5.1f} p99 {talk['ack_ms']['p99'] or 0:6.1f} ms reply p99 "
            f"{talk['reply_ms']['p99'] or 0:6.1f} ms"
            + (f" (gen-2 GC during the heartbeat {beat['gc_pauses_ms']})" if beat.get("gc_pauses_ms") is not None else "")
            + (f" gen-2 GC {talk['gc_pauses_ms']}" if talk.get("gc_pauses_ms") is not None else "")
            + f" | saturation {sat['answered_per_s']:5.0f} msg/s (CPU: "
            f"instances {share['instances']:.0%} nginx {share['nginx']:.0%} redis {share['redis']:.0%} "
            f"load {share['load']:.0%}) | errors {sum(held['errors'].values())}"
            + "".join(f" | {name}: no reply after 15 s {part['unanswered']}" for name, part in
                      (("chat", talk), ("saturation", sat)) if part.get("unanswered"))
            + "".join(f" | {name}: sockets closed {part['closed']}" for name, part in
                      (("heartbeat", beat), ("chat", talk), ("saturation", sat)) if part["closed"]))


# ---- redis-benchmark ---------------------------------------------------------------------------------
def redis_benchmark(redis, requests):
    """redis-benchmark on the bench's Redis (50 clients): SET, GET, a PUBLISH of a 100-byte frame to one of
    100,000 session channels (nobody subscribed), and an EVALSHA of the store's message-rate script (one
    hash and TIME, keys spread over 100,000 sessions); requests per second and p50."""
    binary = shutil.which("redis-benchmark")
    if not binary:
        return None
    base = [binary, "-h", "127.0.0.1", "-p", str(redis.port), "-q", "-n", str(requests)]
    runs = [("", base + ["-t", "set,get"]),
            ("PUBLISH", base + ["-r", "100000", "PUBLISH", "chat:{__rand_int__}:live", "x" * 100])]
    from server.conversations.redis_store import SCRIPTS, _HELPERS
    if shutil.which("redis-cli"):
        sha = subprocess.run(["redis-cli", "-p", str(redis.port), "SCRIPT", "LOAD", _HELPERS + SCRIPTS["rate"]],
                             capture_output=True, text=True).stdout.strip()
        if re.fullmatch(r"[0-9a-f]{40}", sha):
            runs.append(("EVALSHA (rate script)",
                         base + ["-r", "100000", "EVALSHA", sha, "1", "chat:{__rand_int__}:rate", "2.0", "10"]))
    results = {}
    for label, command in runs:
        output = subprocess.run(command, capture_output=True, text=True, timeout=300).stdout
        for piece in re.split(r"[\r\n]+", output):
            found = re.match(r"\s*(.+?): ([0-9.]+) requests per second(?:, p50=([0-9.]+) msec)?", piece)
            if found:
                results[label or found.group(1)] = {"per_s": float(found.group(2)),
                                                    "p50_ms": float(found.group(3)) if found.group(3) else None}
    return results


# ---- report ------------------------------------------------------------------------------------------
def fmt(value, digits=1, thousands=False):
    if value is None:
        return "-"
    return f"{value:,.{digits}f}" if thousands else f"{value:.{digits}f}"


def column(runs, path):
    values = []
    for run in runs:
        value = run
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
            if value is None:
                break
        values.append(value)
    return [v for v in values if v is not None]


def cell(runs, path, digits=1, thousands=False):
    values = column(runs, path)
    return fmt(med(values), digits, thousands)


def rng(runs, path, digits=1, thousands=False):
    return spread(column(runs, path), lambda v: fmt(v, digits, thousands))


def ratio(runs, base, path, digits=2):
    mine, theirs = med(column(runs, path)), med(column(base, path))
    return f"{mine / theirs:.{digits}f}" if mine is not None and theirs else ""


def report(results, args, costs, bench):
    base = results.get(BASELINE, [])
    print(f"\n1. Sockets held: {args.sockets} sockets, hello -> welcome each, then each pings every "
          f"{args.ping_interval:g} s for {args.idle_duration:g} s (the widget's heartbeat). KiB/socket = VmRSS growth "
          "of all instances / sockets held; %CPU = percent of one core per 1,000 idle sockets; us = CPU "
          "microseconds per ping answered.")
    rows = []
    for name in args.configs:
        runs = results[name]
        errors = sum(sum(r["held"]["errors"].values()) for r in runs)
        rows.append([name, CONFIGS[name][1], cell(runs, ("held", "sockets"), 0),
                     cell(runs, ("held", "kib_per_socket")), rng(runs, ("held", "kib_per_socket")),
                     cell(runs, ("held", "nginx_kib_per_socket")),
                     cell(runs, ("held", "redis_bytes_per_socket"), 0),
                     cell(runs, ("heartbeat", "rtt_ms", "p50"), 2), cell(runs, ("heartbeat", "rtt_ms", "p99"), 1),
                     rng(runs, ("heartbeat", "rtt_ms", "p99")),
                     cell(runs, ("heartbeat", "cpu_percent_per_1000", "instances"), 1),
                     cell(runs, ("heartbeat", "cpu_percent_per_1000", "nginx"), 1),
                     cell(runs, ("heartbeat", "cpu_us_per_ping", "instances"), 0),
                     cell(runs, ("heartbeat", "cpu_us_per_ping", "nginx"), 0), errors or ""])
    print(table(["config", "K", "held", "KiB/socket", "range", "nginx KiB/socket", "Redis B/socket",
                 "ping p50 ms", "ping p99 ms", "range", "inst. %CPU/1k idle", "nginx %CPU/1k idle",
                 "inst. us/ping", "nginx us/ping", "errors"], rows))

    print(f"\n2. Chat at {args.chat_rate:g} messages/s from {args.chat_clients} visitors for {args.chat_duration:g} s "
          "(open loop): ack = message sent -> ack (stored); reply = message sent -> stored reply frame. CPU ms per "
          "message answered.")
    rows = []
    for name in args.configs:
        runs = results[name]
        missing = sum(r["chat"]["missing"] for r in runs)
        rows.append([name, cell(runs, ("chat", "acked_per_s"), 0),
                     cell(runs, ("chat", "ack_ms", "p50"), 2), cell(runs, ("chat", "ack_ms", "p99"), 1),
                     rng(runs, ("chat", "ack_ms", "p99")), ratio(runs, base, ("chat", "ack_ms", "p99")),
                     cell(runs, ("chat", "ack_ms", "max"), 1),
                     cell(runs, ("chat", "reply_ms", "p50"), 2), cell(runs, ("chat", "reply_ms", "p99"), 1),
                     rng(runs, ("chat", "reply_ms", "p99")),
                     cell(runs, ("chat", "cpu_ms_per_message", "instances"), 2),
                     ratio(runs, base, ("chat", "cpu_ms_per_message", "instances")),
                     cell(runs, ("chat", "cpu_ms_per_message", "nginx"), 2),
                     cell(runs, ("chat", "cpu_ms_per_message", "redis"), 2), missing or ""]
                    + ([cell(runs, ("chat", "gc_pause_max_ms"), 0)] if args.gc_log else []))
    print(table(["config", "acked/s", "ack p50", "ack p99", "range", "x base", "ack max", "reply p50", "reply p99",
                 "range", "inst. ms/msg", "x base", "nginx ms/msg", "Redis ms/msg", "missing"]
                + (["longest gen-2 GC ms"] if args.gc_log else []), rows))
    chars = med([v for n in args.configs for v in column(results[n], ("chat", "reply_chars"))])
    chunks = med([v for n in args.configs for v in column(results[n], ("chat", "chunks_per_reply"))])
    print(f"replies: {fmt(chars, 0)} characters in {fmt(chunks, 1)} chunks on average")

    print(f"\n3. Saturation: {args.sat_clients} visitors x {args.sat_window} messages in flight (a message leaves the "
          f"window with its reply), {args.sat_duration:g} s. CPU share: 1.00 = one core; the machine has "
          f"{os.cpu_count()} and every process below shares them.")
    rows = []
    for name in args.configs:
        runs = results[name]
        rows.append([name, cell(runs, ("saturation", "answered_per_s"), 0, True),
                     rng(runs, ("saturation", "answered_per_s"), 0, True),
                     ratio(runs, base, ("saturation", "answered_per_s")),
                     cell(runs, ("saturation", "ack_ms", "p99"), 0),
                     cell(runs, ("saturation", "cpu_share", "instances"), 2),
                     cell(runs, ("saturation", "cpu_share", "nginx"), 2),
                     cell(runs, ("saturation", "cpu_share", "redis"), 2),
                     cell(runs, ("saturation", "cpu_share", "load"), 2),
                     cell(runs, ("saturation", "answered_per_instance_cpu_s"), 0, True),
                     ratio(runs, base, ("saturation", "answered_per_instance_cpu_s")),
                     cell(runs, ("saturation", "messages_per_conversation"), 0)])
    print(table(["config", "msg/s", "range", "x base", "ack p99 ms", "CPU inst.", "nginx", "Redis", "load",
                 "msg per inst. CPU-s", "x base", "msgs/conv."], rows))

    redis_configs = [n for n in args.configs if CONFIGS[n][0] == "redis"]
    if redis_configs:
        total = costs["total"] if costs else None
        print("\n4. Redis per chat message, measured under the chat load (INFO commandstats and stats deltas / "
              "messages answered, background taken off); `calls` counts every command, those inside scripts too "
              "(an EVALSHA and what its script ran); `on indexes` see below.")
        rows = []
        for name in redis_configs:
            runs = results[name]
            rows.append([name, cell(runs, ("chat", "redis_per_message", "calls"), 1),
                         cell(runs, ("chat", "redis_per_message", "commands", "evalsha"), 1),
                         cell(runs, ("chat", "redis_per_message", "index_calls"), 1),
                         cell(runs, ("chat", "redis_per_message", "net_in"), 0, True),
                         cell(runs, ("chat", "redis_per_message", "net_out"), 0, True),
                         cell(runs, ("chat", "redis_per_message", "used_memory"), 0, True),
                         cell(runs, ("chat", "redis_per_message", "aof"), 0, True),
                         cell(runs, ("chat", "cpu_ms_per_message", "redis"), 3),
                         cell(runs, ("saturation", "redis_per_message", "calls"), 1),
                         cell(runs, ("saturation", "redis_per_message", "net_out"), 0, True)])
        if total:
            rows.append(["redis_cost.py", fmt(sum(total["commands"].values()), 1),
                         fmt(total["commands"].get("evalsha"), 1),
                         fmt(sum(v for k, v in total["commands"].items() if k in INDEX_COMMANDS), 1),
                         fmt(total["bytes_in"], 0, True), fmt(total["bytes_out"], 0, True),
                         fmt(costs["memory_per_message"], 0, True), "", "", "", ""])
        print(table(["config", "calls", "EVALSHA", "on indexes", "bytes in", "bytes out", "used_memory",
                     "AOF bytes", "Redis CPU ms", "calls (sat.)", "bytes out (sat.)"], rows))
        commands = {}
        for name in redis_configs:
            for run in results[name]:
                for command, calls in (run["chat"]["redis_per_message"] or {}).get("commands", {}).items():
                    commands.setdefault(command, []).append(calls)
        mine = " ".join(f"{k}:{med(v):.2f}" for k, v in sorted(commands.items(), key=lambda kv: -med(kv[1])))
        print(f"commands per message (median over Redis runs): {mine}")
        if total:
            theirs = " ".join(f"{k}:{v:g}" for k, v in sorted(total["commands"].items(), key=lambda kv: -kv[1]))
            print(f"bench/redis_cost.py ({costs['reply_chars']}-character reply in {costs['chunks']} chunks, "
                  f"a fresh conversation, {total['round_trips']:g} round trips): {theirs}")
        print("`on indexes`: ZADD/ZREM/ZRANGEBYSCORE/... on chat:sessions and chat:claims, the two keys without a "
              "session hash tag (one slot: one shard of a Redis Cluster takes all of them)")
        background = med([r["heartbeat"]["redis_background_per_s"]["processed"] for n in redis_configs
                          for r in results[n]])
        print(f"background with no chat: {fmt(background, 1)} Redis requests/s (sweeps, claim checks, "
              "budget reads, subscriber PINGs) for the whole configuration")
    if bench:
        print("\n5. redis-benchmark on this machine (50 clients, -q; the benchmark client shares the 2 cores):")
        print(table(["test", "requests/s", "p50 ms"], [[k, fmt(v["per_s"], 0, True), fmt(v["p50_ms"], 3)]
                                                         for k, v in bench.items()]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated: {', '.join(CONFIGS)}")
    parser.add_argument("--repeats", type=int, default=3, help="repeat every configuration (medians reported)")
    parser.add_argument("--sockets", type=int, default=2000, help="sockets held (phase a)")
    parser.add_argument("--ping-interval", type=float, default=4.0, help="seconds between a socket's pings")
    parser.add_argument("--idle-duration", type=float, default=20.0,
                        help="seconds of heartbeat: 20 takes in one of the server's protocol pings per socket")
    parser.add_argument("--chat-clients", type=int, default=200)
    parser.add_argument("--chat-rate", type=float, default=200.0, help="messages per second, all clients together")
    parser.add_argument("--chat-duration", type=float, default=10.0)
    parser.add_argument("--sat-clients", type=int, default=256)
    parser.add_argument("--sat-window", type=int, default=2)
    parser.add_argument("--sat-duration", type=float, default=6.0)
    parser.add_argument("--gc-log", action="store_true", help="log the instances' full garbage collections and "
                        "report those that paused them during the chat phase")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds of quiet before reading memory")
    parser.add_argument("--benchmark-requests", type=int, default=100_000, help="redis-benchmark -n (0: skip it)")
    parser.add_argument("--smoke", action="store_true", help="N=60, 1 repeat, 1 s phases (CI smoke)")
    parser.add_argument("--report", metavar="JSON", help="print the tables of a results file again, measuring nothing")
    args = parser.parse_args(argv)
    if args.report:
        return reprint(args.report)
    if args.smoke:
        args.configs = "sqlite-direct,redis-2" if args.configs == ",".join(CONFIGS) else args.configs
        args.repeats, args.sockets, args.idle_duration, args.ping_interval = 1, 60, 1.0, 1.0
        args.chat_clients, args.chat_rate, args.chat_duration = 20, 40.0, 1.0
        args.sat_clients, args.sat_duration, args.benchmark_requests, args.pause = 20, 1.0, 2000, 0.3
    args.configs = [c for c in args.configs.split(",") if c]
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration(s): {', '.join(unknown)}")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the servers on the way out
    args.server_env = {}
    if args.gc_log:
        folder = tempfile.mkdtemp(prefix="chat-bench-gc-")
        atexit.register(shutil.rmtree, folder, True)
        with open(os.path.join(folder, "sitecustomize.py"), "w") as module:
            module.write(GC_LOG)
        args.server_env["PYTHONPATH"] = os.pathsep.join(p for p in (folder, os.environ.get("PYTHONPATH")) if p)
    limits = raise_nofile(20_000)
    if args.sockets * 2 + 500 > limits[0]:
        print(f"warning: open-file limit {limits[0]} is low for {args.sockets} sockets", file=sys.stderr)
    print(f"cluster: {os.cpu_count()} cores shared by every instance, nginx, Redis and this load process "
          "(nothing pinned); medians of repeats, interleaved", file=sys.stderr, flush=True)
    started = time.time()
    costs = asyncio.run(redis_cost.measure(None, 20 if args.smoke else 200))
    with RedisServer() as redis:
        results = asyncio.run(run(args, redis))
        bench = redis_benchmark(redis, args.benchmark_requests) if args.benchmark_requests else None
    print(f"\ncluster: {args.repeats} repeat(s), medians (range); {time.time() - started:.0f} s; {os.cpu_count()} cores "
          "shared by the instances, nginx, Redis and the load generator, nothing pinned; x base = against "
          f"{BASELINE} (one instance, SQLite, no nginx) in the same run")
    report(results, args, costs, bench)
    path = write_results("cluster", {
        "configs": {c: dict(zip(("store", "instances", "proxied"), CONFIGS[c])) for c in args.configs},
        "repeats": args.repeats, "sockets": args.sockets, "ping_interval": args.ping_interval,
        "idle_duration": args.idle_duration,
        "chat": {"clients": args.chat_clients, "rate": args.chat_rate, "duration": args.chat_duration},
        "saturation": {"clients": args.sat_clients, "window": args.sat_window, "duration": args.sat_duration},
        "server_env": SERVER_ENV, "questions": QUESTIONS, "redis_cost": costs, "redis_benchmark": bench,
        "results": results,
    })
    print(f"\nwrote {path.relative_to(path.parent.parent.parent)}")
    failed = any(sum(r["held"]["errors"].values()) or r["chat"]["missing"] or r["chat"]["closed"]
                 for runs in results.values() for r in runs)
    return 1 if args.smoke and failed else 0


def reprint(path):
    """The tables of a bench/results/cluster-*.json again (older files: the CPU share per 1,000 sockets
    becomes a percentage)."""
    with open(path) as source:
        data = json.load(source)
    for runs in data["results"].values():
        for run in runs:
            beat = run["heartbeat"]
            if "cpu_percent_per_1000" not in beat and beat.get("cpu_share_per_1000"):
                beat["cpu_percent_per_1000"] = {k: v * 100 for k, v in beat["cpu_share_per_1000"].items()}
    args = argparse.Namespace(
        configs=list(data["configs"]), sockets=data["sockets"], ping_interval=data["ping_interval"],
        idle_duration=data["idle_duration"], chat_rate=data["chat"]["rate"], chat_clients=data["chat"]["clients"],
        chat_duration=data["chat"]["duration"], sat_clients=data["saturation"]["clients"],
        sat_window=data["saturation"]["window"], sat_duration=data["saturation"]["duration"],
        gc_log=any(r["chat"].get("gc_pauses_ms") is not None for runs in data["results"].values() for r in runs))
    print(f"cluster: {data['repeats']} repeat(s), medians (range); measured {data['machine']['date']} on "
          f"{data['machine']['nproc']} cores (from {path})")
    report(data["results"], args, data.get("redis_cost"), data.get("redis_benchmark"))
    return 0


async def run(args, redis):
    raw = aioredis.Redis(host="127.0.0.1", port=redis.port, decode_responses=True)
    results = {name: [] for name in args.configs}
    try:
        for repeat in range(args.repeats):
            order = args.configs[repeat % len(args.configs):] + args.configs[:repeat % len(args.configs)]
            for name in order:
                began = time.perf_counter()
                result = await measure(name, redis, raw, args)
                result["seconds"] = time.perf_counter() - began
                results[name].append(result)
                print(f"[{repeat + 1}/{args.repeats}] {line(result)} | {result['seconds']:.0f} s", file=sys.stderr,
                      flush=True)
    finally:
        await raw.aclose()
    return results


if __name__ == "__main__":
    sys.exit(main())
