"""Server capacity: sockets held, memory per socket, round-trip latency under load, saturation throughput.

For each server stack (a fresh server process per step) and each N:

1. open N WebSocket connections from this process (asyncio + ``websockets`` client, loopback, with the
   Origin header the server allows); each sends ``hello`` and a ``ping`` and gets the answers (our
   app: welcome + pong; the echo floor: both echoed), so every socket has exchanged messages;
2. memory per socket = growth of the server's VmRSS (``/proc/PID/status``) over a warmed-up baseline,
   divided by the sockets held;
3. the phases of ``--phases``, in this order, on the same sockets:

   - ``ping``: every client pings at a steady rate for ``--duration`` seconds (1 per second each, the
     total capped at ``--max-rate``): round trip p50/p99/max and the answers per second actually served;
   - ``heartbeat``: every socket behaves as an idle widget for ``--heartbeat-duration`` s and nothing
     else, as its welcome says (``heartbeat: {interval, idle_timeout}``: the server beats, the widget
     pings when it heard nothing for interval + 1.5 s or its last ping is older than idle_timeout / 3;
     no such field, as from the server before issue 15: a ping every 4 s), random phases: the server's
     CPU share of one core;
   - ``chat``: the same heartbeat on every socket while ``--chatters`` of them each send a visitor
     message every 1/``--chat-rate`` s for ``--chat-duration`` s through the full protocol (a fresh id and
     a question on knowledge.md's topics -> ``ack`` after the durable store write -> the consultant's
     streamed ``reply``), open loop: a message goes when due, answered or not, so a saturated server
     shows as messages acknowledged per second below those sent and a backlog, never as a slower load.
     Ack round trip p50/p99/p99.9/max, reply completion, server CPU per message.

Then (phase ``saturation``): ``--sat-clients`` connections each keeping ``--sat-window`` pings in flight for
``--sat-duration`` seconds: answered messages per second.

Stacks: ``app`` = ``chat-widget serve`` (Quart + Uvicorn websockets-sansio, deflate off; its store is
``--store``, SQLite in a fresh file by default, and the default knowledge consultant answers); ``base`` =
the same from another checkout (``--base-root``, e.g. /tmp/base15: before and after in one run,
interleaved); ``app-gc-freeze`` = ``app`` with the experimental GC policy (``CHAT_WIDGET_GC=freeze``);
``echo`` = bench/echo_server.py (bare ``websockets``, the floor); optional ``app-wsproto`` (Uvicorn
ws=wsproto) and ``app-hypercorn`` (Hypercorn), both via bench/app_server.py. The server is pinned to CPU
0 and this load process to CPU 1 (``--no-pin`` to turn off). Both raise the soft open-file limit to the
hard limit. The load is many visitors from few addresses (127.1.x.y, 16 sockets each): the per-address
budgets are opened (e2e/server_process.py's ``ONE_ADDRESS_MANY_VISITORS``), and the per-session message
rate too (``CHAT_ENV``), so ``--chat-rate`` may go above the widget's 2 a second. ``--gc-log`` records
the server's full-collection pauses (wall and CPU time) per phase.

    .venv/bin/python bench/capacity.py                        # app + echo, N = 100, 1000, 5000, 10000
    .venv/bin/python bench/capacity.py --stacks app,echo,app-wsproto,app-hypercorn --sizes 1000,10000
    .venv/bin/python bench/capacity.py --stacks app,base --base-root /tmp/base15 --sizes 1000,2000 \
        --phases ping,heartbeat,chat --chatters 200 --gc-log  # before/after, interleaved
    .venv/bin/python bench/capacity.py --smoke                # N = 50, short phases (CI smoke)

Writes bench/results/capacity-<time>.json (and capacity-latest.json).
"""

import argparse
import asyncio
import gc
import itertools
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from websockets.asyncio.client import connect

from common import ROOT, free_port, raise_nofile, serve_options, table, write_results
from server_process import ONE_ADDRESS_MANY_VISITORS  # load, not budgets, is measured here

ORIGIN = "http://load.test"
SERVING = re.compile(r"serving (http://\S+?)/? ")
STACKS = {
    "app": "chat-widget serve (Quart + Uvicorn websockets-sansio, deflate off)",
    "echo": "bare websockets echo server (floor)",
    "app-sansio": "our app via bench/app_server.py, same stack as chat-widget serve (for experiments: BENCH_GC)",
    "app-wsproto": "our app under Uvicorn ws=wsproto",
    "app-hypercorn": "our app under Hypercorn",
    "base": "chat-widget serve of the checkout --base-root (before/after)",
    "app-gc-freeze": "chat-widget serve with CHAT_WIDGET_GC=freeze (the experimental GC policy, server/gcpolicy.py)",
}
PHASES = ("ping", "heartbeat", "chat", "saturation")


# With --gc-log, on the server's PYTHONPATH: one line per full (generation 2) collection, its pause in wall
# time and in the process's CPU time (the machine is shared: another process taking the core stretches the
# wall time, not the CPU time), how many objects it collected, and when it ended on CLOCK_MONOTONIC
# (time.perf_counter's clock here; bench/cluster.py sets pauses against latencies with it). Not the frozen
# count: gc.get_freeze_count() walks the whole frozen set (30 ms at 2,000 sockets in the server), and it was
# timed as part of every pause until 2026-12-01.
GC_LOG = """import gc, sys, time
_started = []
def _log(phase, info):
    if info.get("generation") != 2:
        return
    if phase == "start":
        _started[:] = [time.perf_counter(), time.process_time()]
    elif _started:
        print("gc-pause wall %.1f ms cpu %.1f ms collected %d at %.3f" % (
              (time.perf_counter() - _started[0]) * 1000, (time.process_time() - _started[1]) * 1000,
              info.get("collected", 0), time.perf_counter()), file=sys.stderr, flush=True)
gc.callbacks.append(_log)
"""
GC_PAUSE = re.compile(r"gc-pause wall ([0-9.]+) ms cpu ([0-9.]+) ms")


class ServerUnderTest:
    """A server process on a loopback port; knows its pid (for /proc) and stops cleanly."""

    def __init__(self, stack, cpu=None, root=ROOT, store="memory", env=None, gc_log=False):
        """``root``: the checkout whose server runs (another one for before/after comparisons, with its own
        .venv when it has one); ``store``: ``memory`` or ``sqlite`` (a fresh temporary file); ``env``: more
        environment for the server (``CHAT_WIDGET_GC=python``, ...)."""
        self.stack = stack
        self.cpu = cpu
        self.root = Path(root)
        self.env = {**ONE_ADDRESS_MANY_VISITORS, **(env or {})}
        self.port = free_port()
        self.tmp = None
        if gc_log:
            self.tmp = tempfile.mkdtemp(prefix="chat-bench-capacity-")
            Path(self.tmp, "sitecustomize.py").write_text(GC_LOG)
            self.env["PYTHONPATH"] = self.tmp
        python = str(self.root / ".venv" / "bin" / "python")
        python = python if os.access(python, os.X_OK) else sys.executable
        if stack == "app":
            command = [python, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                       "--allow-origin", ORIGIN, "--log-level", "warning"]
            if store == "sqlite":
                self.tmp = self.tmp or tempfile.mkdtemp(prefix="chat-bench-capacity-")
                command += ["--store", os.path.join(self.tmp, "chat.sqlite3")]
            elif "--store" in serve_options():
                command += ["--store", "memory"]
        elif stack == "echo":
            command = [python, str(ROOT / "bench" / "echo_server.py"), "--port", str(self.port)]
        else:
            stack_name = {"app-sansio": "uvicorn-sansio", "app-wsproto": "uvicorn-wsproto",
                          "app-hypercorn": "hypercorn"}[stack]
            command = [python, str(ROOT / "bench" / "app_server.py"), "--stack", stack_name, "--port", str(self.port),
                       "--allow-origin", ORIGIN]
        self.command = command
        self.output = []
        self.process = None

    def start(self, timeout=30):
        self.process = subprocess.Popen(self.command, cwd=self.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})
        ready = threading.Event()

        def pump():
            for line in self.process.stdout:
                self.output.append(line)
                if SERVING.search(line):
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"{self.stack} did not start:\n" + "".join(self.output[-20:]))
        if self.cpu is not None:
            try:
                os.sched_setaffinity(self.process.pid, {self.cpu})
                for task in os.listdir(f"/proc/{self.process.pid}/task"):
                    os.sched_setaffinity(int(task), {self.cpu})
            except OSError:
                pass
        return self

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/ws?v=1"

    def gc_pauses(self, since=0, until=None):
        """[(wall ms, CPU ms)] of the full collections logged (--gc-log) in output lines ``since:until``."""
        return [(float(m.group(1)), float(m.group(2))) for line in self.output[since:until]
                if (m := GC_PAUSE.search(line))]

    def open_fds(self):
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def rss_kib(self):
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def cpu_seconds(self):
        """User + system CPU time the server process has used so far."""
        with open(f"/proc/{self.process.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if os.environ.get("BENCH_GC_LOG"):
            for line in self.output:
                if line.startswith("gc:"):
                    print(f"  {self.stack}: {line.strip()}", file=sys.stderr)
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait(5)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def percentile(values, fraction):
    if not values:
        return None
    values = sorted(values)
    index = min(len(values) - 1, max(0, round(fraction * (len(values) - 1))))
    return values[index]


PER_ADDRESS = 16  # the server allows 20 sockets per client address (max_connections_per_address)
_addresses = itertools.count()


def source_address():
    """A loopback source address (127.1.0.0/16 and up) shared by at most PER_ADDRESS clients, like real
    visitors each on their own address; never reused within a run."""
    index = next(_addresses) // PER_ADDRESS
    return f"127.{1 + index // 65536}.{index // 256 % 256}.{index % 256}"


async def open_client(url):
    """One client: handshake with the allowed Origin, hello, ping; returns the connection."""
    connection = await connect(url, origin=ORIGIN, proxy=None, open_timeout=30, ping_interval=None,
                               close_timeout=1, max_queue=None, local_addr=(source_address(), 0))
    await connection.send('{"type":"hello"}')
    connection.welcome = json.loads(await asyncio.wait_for(connection.recv(), 30))  # for the heartbeat it asks
    await connection.send('{"type":"ping","t":0}')
    await asyncio.wait_for(connection.recv(), 30)
    return connection


async def open_many(url, count, concurrency=200, open_one=None):
    """N connections (each made by ``open_one(url)``, ``open_client`` by default), at most
    ``concurrency`` handshakes at once; (connections, failures, seconds)."""
    gate = asyncio.Semaphore(concurrency)
    errors = {}
    open_one = open_one or open_client

    async def one():
        async with gate:
            try:
                return await open_one(url)
            except Exception as error:  # noqa: BLE001 - counted and reported
                key = type(error).__name__ + ": " + str(error)[:80]
                errors[key] = errors.get(key, 0) + 1
                return None

    started = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(count)))
    return [c for c in results if c is not None], errors, time.perf_counter() - started


def close_all(connections):
    for connection in connections:
        try:
            connection.transport.abort()
        except Exception:  # noqa: BLE001
            pass


async def steady_load(connections, duration, interval):
    """Each connection pings every ``interval`` s (random phase) for ``duration`` s; round trips in ms."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration
    rtts, failures = [], [0]

    async def client(connection):
        await asyncio.sleep(random.uniform(0, interval))
        due = loop.time()
        while loop.time() < deadline:
            sent = time.perf_counter()
            try:
                await connection.send('{"type":"ping","t":%r}' % sent)
                while '"beat"' in await connection.recv():  # a server-driven heartbeat's, not the answer
                    pass
            except Exception:  # noqa: BLE001
                failures[0] += 1
                return
            rtts.append((time.perf_counter() - sent) * 1000)
            due += interval
            await asyncio.sleep(max(0.0, due - loop.time()))

    started = loop.time()
    tasks = [asyncio.ensure_future(client(c)) for c in connections]
    _, late = await asyncio.wait(tasks, timeout=duration + interval + 10)
    for task in late:  # an answer that never came
        task.cancel()
        failures[0] += 1
    elapsed = loop.time() - started
    return rtts, failures[0], elapsed


async def saturate(server, clients, window, duration):
    """``clients`` connections each with ``window`` pings in flight: answered messages per second, and per
    second of server CPU (the load process may be the bottleneck for the echo floor; this is not)."""
    connections, errors, _ = await open_many(server.url, clients)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + duration
    counts = [0]
    frame = '{"type":"ping","t":1}'

    async def client(connection):
        for _ in range(window):
            await connection.send(frame)
        try:
            while loop.time() < deadline:
                await connection.recv()
                counts[0] += 1
                await connection.send(frame)
        except Exception:  # noqa: BLE001
            pass

    gc.collect()
    gc.disable()
    started, cpu = loop.time(), server.cpu_seconds()
    try:
        await asyncio.gather(*(client(c) for c in connections))
    finally:
        gc.enable()
    elapsed, cpu = loop.time() - started, server.cpu_seconds() - cpu
    close_all(connections)
    return {"msgs_per_s": counts[0] / elapsed if elapsed else 0.0, "server_cpu_share": cpu / elapsed if elapsed else 0,
            "msgs_per_cpu_s": counts[0] / cpu if cpu else None, "clients": len(connections), "errors": errors}


# ---- the widget's heartbeat, and chat through the full protocol (phases "heartbeat" and "chat") --------
OLD_PING_INTERVAL = 4.0  # a welcome without "heartbeat" (servers before issue 15): a ping every 4 s
SILENCE_SLACK = 1.5      # the widget pings when it heard nothing for the beat interval plus this
# The widget's heartbeat tick (widget/core/lifecycle.py, ping_interval): it pings at most once per tick, so a
# silence (a stalled server) costs one ping per socket every 4 s, never a ping per turn of the load's loop.
PING_TICK = 4.0


def heartbeat_plan(welcome):
    """``(silence, refresh)`` as the widget reads its welcome: it pings when it received nothing for
    ``silence`` s, or when its last ping is older than ``refresh`` s. Without ``heartbeat`` in the welcome
    (the server before issue 15, or the echo floor) it pings every 4 s: ``(None, 4.0)``."""
    beat = welcome.get("heartbeat") if isinstance(welcome, dict) else None
    if not beat:
        return None, OLD_PING_INTERVAL
    return beat["interval"] + SILENCE_SLACK, beat["idle_timeout"] / 3


class WidgetSocket:
    """One held socket behaving as a connected widget: its heartbeat as its welcome says, and visitor
    messages on demand. Every frame goes to the current ``phase`` (bench/cluster.py's ``Phase``, which
    times pongs, acks and replies); shaped like cluster.py's ``Visitor`` so its paced loop and settling
    apply."""

    def __init__(self, connection):
        self.connection = connection
        welcome = getattr(connection, "welcome", None) or {}
        self.session = welcome.get("session")
        self.silence, self.refresh = heartbeat_plan(welcome)
        self.phase = None
        self.sent, self.replies, self.acked = {}, {}, set()
        self.window = None
        self.messages = 0
        self.pings = 0
        self.last_rx = time.perf_counter()
        self._ids = itertools.count(1)
        self.reader = asyncio.ensure_future(self._read())
        self.beating = asyncio.ensure_future(self._heartbeat())

    async def _read(self):
        try:
            async for data in self.connection:
                self.last_rx = now = time.perf_counter()
                if self.phase is not None:
                    self.phase.on_frame(self, json.loads(data), now)
        except Exception:  # noqa: BLE001 - the socket closed: counted as missing answers
            pass

    async def _heartbeat(self):
        try:
            if self.silence is None:  # the old widget: every 4 s, random phase
                await asyncio.sleep(random.uniform(0, self.refresh))
                while True:
                    await self.ping()
                    await asyncio.sleep(self.refresh)
            last_ping = time.perf_counter() - random.uniform(0, self.refresh)
            while True:
                now = time.perf_counter()
                due = min(max(self.last_rx + self.silence, last_ping + PING_TICK), last_ping + self.refresh)
                if now >= due:
                    await self.ping()
                    last_ping = now
                else:
                    await asyncio.sleep(due - now)
        except Exception:  # noqa: BLE001 - closed
            pass

    async def ping(self):
        self.pings += 1
        await self.connection.send('{"type":"ping","t":%r}' % time.perf_counter())

    async def ask(self, text):
        message_id = f"m{next(self._ids)}"
        self.sent[message_id] = time.perf_counter()
        self.messages += 1
        await self.connection.send(json.dumps({"type": "message", "id": message_id, "text": text}))

    def done(self):
        if self.window is not None:
            self.window.release()

    def stop(self):
        self.reader.cancel()
        self.beating.cancel()


async def idle_heartbeat(server, sockets, duration):
    """Every socket keeps the widget's heartbeat and nothing else for ``duration`` s: the server's CPU
    share of one core, pings per second, ping round trips."""
    import cluster  # bench/cluster.py (it imports this module: not at the top)

    phase = cluster.Phase()
    for socket in sockets:
        socket.phase = phase
    pings, cpu, started = sum(s.pings for s in sockets), server.cpu_seconds(), time.perf_counter()
    await asyncio.sleep(duration)
    elapsed = time.perf_counter() - started
    cpu, pings = server.cpu_seconds() - cpu, sum(s.pings for s in sockets) - pings
    rtts = [ms for _, ms in phase.pings]
    return {"sockets": len(sockets), "seconds": elapsed, "server_cpu_share": cpu / elapsed,
            "server_cpu_percent_per_10k": cpu / elapsed * 100 * 10_000 / len(sockets) if sockets else None,
            "pings_per_s": pings / elapsed, "ping_rtt_ms": cluster.quantiles(rtts),
            "closed": sum(1 for s in sockets if s.connection.state.name != "OPEN")}


async def chat_load(server, sockets, chatters, rate, duration, settle_for=15.0):
    """``chatters`` of the held sockets each send a visitor message every 1/``rate`` s (open loop: a message
    goes when due, answered or not, so a saturated server shows as a growing backlog), while every socket
    keeps its heartbeat: ack round trips (message sent -> ``ack``: the durable store write), reply
    completion (-> the stored ``reply``), messages per second offered and acknowledged, server CPU."""
    import cluster

    talkers = sockets[:min(chatters, len(sockets))]
    questions = itertools.cycle(cluster.QUESTIONS)  # the demo knowledge.md's topics: hours, returns, rugs, ...
    idle = cluster.Phase()
    for socket in sockets:
        socket.phase = idle
    cpu, own, started = server.cpu_seconds(), time.process_time(), time.perf_counter()
    phase = await cluster.paced(talkers, 1.0 / rate, duration, lambda socket: socket.ask(next(questions)))
    span = (started, started + duration)
    in_window = time.perf_counter() - started
    cpu_window = server.cpu_seconds() - cpu
    own = time.process_time() - own  # this load's CPU: near 100 % of its core, the load was the limit
    acked_in_window = len(cluster.within(phase.acks, span))
    missing = await cluster.settle(talkers, settle_for)
    acks = [ms for _, ms in phase.acks]
    replies = [ms for _, ms in phase.replies]
    return {
        "chatters": len(talkers), "rate_each": rate, "seconds": duration,
        "offered_per_s": len(talkers) * rate, "sent": phase.sent, "sent_per_s": phase.sent / in_window,
        "acked_per_s": acked_in_window / duration, "backlog_at_end": phase.sent - acked_in_window,
        "answered_per_s": len(cluster.within(phase.replies, span)) / duration,
        "unanswered_after_settle": missing, "errors": phase.errors, "closed": phase.closed,
        "ack_ms": percentiles(acks), "reply_ms": percentiles(replies),
        "ping_rtt_ms": percentiles([ms for _, ms in idle.pings + phase.pings]),
        "server_cpu_share": cpu_window / in_window, "load_cpu_share": own / in_window,
        "server_cpu_ms_per_message": cpu_window / acked_in_window * 1000 if acked_in_window else None,
    }


def percentiles(values):
    return {"p50": percentile(values, 0.50), "p99": percentile(values, 0.99), "p999": percentile(values, 0.999),
            "max": max(values) if values else None, "n": len(values)}


def pause_summary(pauses):
    """Full-collection pauses of one phase (--gc-log): how many, the longest in wall and in CPU time."""
    return {"count": len(pauses), "max_wall_ms": max((w for w, _ in pauses), default=0.0),
            "max_cpu_ms": max((c for _, c in pauses), default=0.0), "cpu_ms": sum(c for _, c in pauses)}


async def measure_size(server, size, args):
    # Warm up: a few sockets opened and closed, so lazy imports and first allocations are not counted.
    warm, _, _ = await open_many(server.url, 20)
    close_all(warm)
    await asyncio.sleep(args.pause)
    before = server.rss_kib()
    mark = len(server.output)
    connections, errors, open_seconds = await open_many(server.url, size)
    await asyncio.sleep(args.pause)
    after = server.rss_kib()
    held = len(connections)
    result = {"n": size, "held": held, "open_errors": errors, "open_seconds": open_seconds,
              "rss_before_kib": before, "rss_after_kib": after,
              "kib_per_socket": (after - before) / held if held else None, "gc": {}}
    if args.gc_log:
        result["gc"]["open"], mark = pause_summary(server.gc_pauses(mark)), len(server.output)
    # The load process is the measuring instrument: its own garbage collector pausing (10,000 client
    # connections are a big heap) would show up as server latency. Off while measuring.
    gc.collect()
    gc.freeze()
    gc.disable()
    sockets = []
    try:
        if "ping" in args.phases:
            interval = max(args.interval, held / args.max_rate) if held else args.interval
            cpu, own = server.cpu_seconds(), time.process_time()
            rtts, failures, elapsed = await steady_load(connections, args.duration, interval)
            cpu, own = server.cpu_seconds() - cpu, time.process_time() - own
            result.update({
                "interval_s": interval, "answers": len(rtts), "answers_per_s": len(rtts) / elapsed if elapsed else 0,
                "load_failures": failures, "server_cpu_share": cpu / elapsed if elapsed else None,
                "load_cpu_share": own / elapsed if elapsed else None,
                "rtt_ms": {"p50": percentile(rtts, 0.50), "p99": percentile(rtts, 0.99), "p999": percentile(rtts, 0.999),
                           "max": max(rtts) if rtts else None, "mean": statistics.fmean(rtts) if rtts else None},
            })
            if args.gc_log:
                result["gc"]["ping"], mark = pause_summary(server.gc_pauses(mark)), len(server.output)
        if {"heartbeat", "chat"} & set(args.phases):
            sockets = [WidgetSocket(c) for c in connections]
            await asyncio.sleep(args.pause)  # the first pings of a random phase
        if "heartbeat" in args.phases:
            mark = len(server.output)
            result["heartbeat"] = await idle_heartbeat(server, sockets, args.heartbeat_duration)
            if args.gc_log:
                result["gc"]["heartbeat"] = pause_summary(server.gc_pauses(mark))
        if "chat" in args.phases and server.stack != "echo":
            mark = len(server.output)
            result["chat"] = await chat_load(server, sockets, args.chatters, args.chat_rate, args.chat_duration)
            if args.gc_log:
                result["gc"]["chat"] = pause_summary(server.gc_pauses(mark))
            result["rss_after_chat_kib"] = server.rss_kib()
    finally:
        gc.enable()
        gc.unfreeze()
        for socket in sockets:
            socket.stop()
    result["alive_after_load"] = sum(1 for c in connections if c.state.name == "OPEN")
    close_all(connections)
    return result


# The per-session message rate opened, so that --chat-rate above the widget's 2 a second is not refused
# (the bucket is still checked for every message, so its cost stays in).
CHAT_ENV = {"CHAT_WIDGET_MESSAGE_RATE": "100000", "CHAT_WIDGET_MESSAGE_PERIOD": "1",
            "CHAT_WIDGET_MESSAGE_BURST": "100000"}


def server_for(stack, args):
    cpu = None if args.no_pin else 0
    env = {**CHAT_ENV, **args.server_env}
    if stack == "base":
        return ServerUnderTest("app", cpu, root=args.base_root, store=args.store, env=env, gc_log=args.gc_log)
    if stack == "app-gc-freeze":
        return ServerUnderTest("app", cpu, store=args.store, env={**env, "CHAT_WIDGET_GC": "freeze"},
                               gc_log=args.gc_log)
    return ServerUnderTest(stack, cpu, store=args.store if stack == "app" else "memory", env=env, gc_log=args.gc_log)


def line(result):
    """One measurement, as it is printed while the run goes."""
    parts = [f"held {result['held']:>6} {result['kib_per_socket'] or 0:6.1f} KiB/socket"]
    if "rtt_ms" in result:
        rtt = result["rtt_ms"]
        parts.append(f"ping rtt p50 {rtt['p50'] or 0:.2f} p99 {rtt['p99'] or 0:.1f} ms at {result['answers_per_s']:.0f}/s, "
                     f"server CPU {result['server_cpu_share']:.0%}")
    if "heartbeat" in result:
        beat = result["heartbeat"]
        parts.append(f"idle heartbeat: server CPU {beat['server_cpu_share']:.1%} of a core, {beat['pings_per_s']:.0f} pings/s")
    if "chat" in result:
        chat = result["chat"]
        parts.append(f"chat {chat['chatters']}x{chat['rate_each']:g}/s: {chat['acked_per_s']:.0f} of {chat['sent_per_s']:.0f} "
                     f"msg/s acked, backlog {chat['backlog_at_end']}, ack p50 {chat['ack_ms']['p50'] or 0:.1f} "
                     f"p99 {chat['ack_ms']['p99'] or 0:.1f} p99.9 {chat['ack_ms']['p999'] or 0:.1f} max "
                     f"{chat['ack_ms']['max'] or 0:.0f} ms, reply p99 {chat['reply_ms']['p99'] or 0:.0f} ms, "
                     f"server CPU {chat['server_cpu_share']:.0%} (load {chat['load_cpu_share']:.0%}), "
                     f"unanswered {chat['unanswered_after_settle']}")
    for phase, pauses in result.get("gc", {}).items():
        parts.append(f"gc in {phase}: {pauses['count']} full, longest {pauses['max_wall_ms']:.0f} ms "
                     f"({pauses['max_cpu_ms']:.0f} ms CPU)")
    errors = sum(result["open_errors"].values())
    parts.append(f"errors {errors} {list(result['open_errors'])[:1]}" if errors else "no errors")
    return " | ".join(parts)


async def run(args):
    results = {stack: {"sizes": [], "saturation": []} for stack in args.stacks}
    for repeat in range(args.repeats):
        for size in args.sizes:
            for stack in args.stacks:
                server = server_for(stack, args).start()
                try:
                    result = await measure_size(server, size, args)
                finally:
                    server.stop()
                results[stack]["sizes"].append(result)
                print(f"[{repeat + 1}/{args.repeats}] {stack:13} N={size:>6} {line(result)}", file=sys.stderr, flush=True)
        if "saturation" not in args.phases:
            continue
        for stack in args.stacks:
            server = server_for(stack, args).start()
            try:
                result = await saturate(server, args.sat_clients, args.sat_window, args.sat_duration)
            finally:
                server.stop()
            results[stack]["saturation"].append(result)
            print(f"[{repeat + 1}/{args.repeats}] {stack:13} saturation {result['msgs_per_s']:9.0f} msg/s, server CPU "
                  f"{result['server_cpu_share']:.0%}, {result['msgs_per_cpu_s'] or 0:9.0f} msg per CPU-second "
                  f"({result['clients']} clients x {args.sat_window} in flight)", file=sys.stderr, flush=True)
    return results


def fmt(value, digits):
    return "-" if value is None else f"{value:,.{digits}f}"


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values, fmt):
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return ""
    return f"{fmt(min(values))}-{fmt(max(values))}"


def report(results, args):
    if "ping" in args.phases:
        rows = []
        for size in args.sizes:
            for stack in args.stacks:
                runs = [r for r in results[stack]["sizes"] if r["n"] == size]
                kib = [r["kib_per_socket"] for r in runs]
                p50 = [r["rtt_ms"]["p50"] for r in runs]
                p99 = [r["rtt_ms"]["p99"] for r in runs]
                rate = [r["answers_per_s"] for r in runs]
                held = min(r["held"] for r in runs)
                errors = sum(sum(r["open_errors"].values()) + r["load_failures"] for r in runs)
                rows.append([size, stack, held, f"{med(kib):.1f}" if med(kib) is not None else "-",
                             spread(kib, lambda v: f"{v:.1f}"),
                             f"{med(p50):.2f}", spread(p50, lambda v: f"{v:.2f}"),
                             f"{med(p99):.1f}", spread(p99, lambda v: f"{v:.1f}"),
                             f"{med(rate):,.0f}", errors or ""])
        print(table(["N", "stack", "held", "KiB/socket", "range", "rtt p50 ms", "range", "rtt p99 ms", "range",
                     "msg/s", "errors"], rows))
    else:
        rows = []
        for size in args.sizes:
            for stack in args.stacks:
                runs = [r for r in results[stack]["sizes"] if r["n"] == size]
                kib = [r["kib_per_socket"] for r in runs]
                rows.append([size, stack, min(r["held"] for r in runs), fmt(med(kib), 1),
                             spread(kib, lambda v: f"{v:.1f}"), sum(sum(r["open_errors"].values()) for r in runs) or ""])
        print(table(["N", "stack", "held", "KiB/socket", "range", "errors"], rows))
    if "heartbeat" in args.phases:
        rows = []
        for size in args.sizes:
            for stack in args.stacks:
                runs = [r["heartbeat"] for r in results[stack]["sizes"] if r["n"] == size and "heartbeat" in r]
                share = [b["server_cpu_share"] * 100 for b in runs]
                per_10k = [b["server_cpu_percent_per_10k"] for b in runs]
                pings = [b["pings_per_s"] for b in runs]
                rows.append([size, stack, fmt(med(share), 1), spread(share, lambda v: f"{v:.1f}"), fmt(med(per_10k), 1),
                             fmt(med(pings), 0)])
        print(f"\nidle heartbeat ({args.heartbeat_duration:.0f} s, each socket as the widget its welcome describes):")
        print(table(["N", "stack", "server CPU % of a core", "range", "% per 10,000 sockets", "pings/s"], rows))
    if "chat" in args.phases:
        rows = []
        for size in args.sizes:
            for stack in args.stacks:
                runs = [r["chat"] for r in results[stack]["sizes"] if r["n"] == size and "chat" in r]
                if not runs:
                    continue
                column = lambda key, q: [c[key][q] for c in runs]  # noqa: E731
                rows.append([size, stack, runs[0]["chatters"], fmt(med([c["sent_per_s"] for c in runs]), 0),
                             fmt(med([c["acked_per_s"] for c in runs]), 0), fmt(med([c["backlog_at_end"] for c in runs]), 0),
                             fmt(med(column("ack_ms", "p50")), 1), fmt(med(column("ack_ms", "p99")), 1),
                             spread(column("ack_ms", "p99"), lambda v: f"{v:.0f}"), fmt(med(column("ack_ms", "p999")), 1),
                             fmt(med(column("ack_ms", "max")), 0), fmt(med(column("reply_ms", "p99")), 0),
                             fmt(med([c["server_cpu_share"] * 100 for c in runs]), 0),
                             fmt(med([c["server_cpu_ms_per_message"] for c in runs]), 2),
                             sum(c["unanswered_after_settle"] for c in runs) or ""])
        print(f"\nchat ({args.chat_duration:.0f} s; store {args.store}; knowledge consultant; every socket keeps its "
              "heartbeat): ack = message sent -> ack (durable write), reply = -> the stored reply")
        print(table(["N", "stack", "chatters", "sent/s", "acked/s", "backlog", "ack p50 ms", "ack p99", "range",
                     "ack p99.9", "ack max", "reply p99", "server CPU %", "CPU ms/msg", "unanswered"], rows))
    if "saturation" not in args.phases:
        return
    print()
    rows = []
    floor = med([s["msgs_per_cpu_s"] for s in results.get("echo", {}).get("saturation", [])])
    for stack in args.stacks:
        runs = results[stack]["saturation"]
        rates = [s["msgs_per_s"] for s in runs]
        per_cpu = [s["msgs_per_cpu_s"] for s in runs]
        share = med([s["server_cpu_share"] for s in runs])
        ratio = f"{med(per_cpu) / floor:.2f}" if floor and med(per_cpu) and stack != "echo" else ""
        rows.append([stack, f"{med(rates):,.0f}", spread(rates, lambda v: f"{v:,.0f}"), f"{share:.0%}",
                     f"{med(per_cpu):,.0f}" if med(per_cpu) else "-", ratio])
    print(f"saturation: {args.sat_clients} clients x {args.sat_window} pings in flight, {args.sat_duration:.0f} s; "
          "a server CPU share below ~95 % means the load process, not the server, was the limit")
    print(table(["stack", "msg/s", "range", "server CPU", "msg per server CPU-s", "vs echo"], rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stacks", default="app,echo", help=f"comma-separated: {', '.join(STACKS)}")
    parser.add_argument("--sizes", default="100,1000,5000,10000")
    parser.add_argument("--repeats", type=int, default=3, help="repeat every measurement (medians reported)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of steady load per N")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between pings per client")
    parser.add_argument("--max-rate", type=float, default=5000.0, help="cap on total pings per second")
    parser.add_argument("--sat-clients", type=int, default=64)
    parser.add_argument("--sat-window", type=int, default=8)
    parser.add_argument("--sat-duration", type=float, default=5.0)
    parser.add_argument("--phases", default="ping,saturation",
                        help="comma-separated: ping (every socket pings at --interval), heartbeat (every socket as an "
                             "idle widget: server CPU), chat (--chatters of them chat through the full protocol while "
                             "all keep the heartbeat), saturation")
    parser.add_argument("--heartbeat-duration", type=float, default=30.0, help="seconds of the idle heartbeat phase")
    parser.add_argument("--chatters", type=int, default=1000, help="sockets that chat in the chat phase")
    parser.add_argument("--chat-rate", type=float, default=1.0, help="messages per second per chatter (open loop)")
    parser.add_argument("--chat-duration", type=float, default=30.0, help="seconds of the chat phase")
    parser.add_argument("--store", default="sqlite", choices=["sqlite", "memory"],
                        help="the app's store: sqlite (a fresh file, as `chat-widget serve` by default) or memory")
    parser.add_argument("--base-root", default=None,
                        help="another checkout (e.g. /tmp/base15) whose server is the stack 'base': before/after "
                             "in the same run, interleaved")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="more environment for the servers (experiments, e.g. CHAT_WIDGET_GC=python)")
    parser.add_argument("--gc-log", action="store_true",
                        help="record the server's full-collection pauses (wall and CPU ms) in each phase")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load to separate CPUs")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds of quiet before and after opening the "
                        "sockets, and before the heartbeat (the memory is read in them)")
    parser.add_argument("--smoke", action="store_true", help="N=50, 1 repeat, 1 s phases, 0.2 s pauses (CI smoke)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.repeats, args.duration, args.sat_duration, args.sat_clients = "50", 1, 1.0, 1.0, 8
        args.pause = 0.2  # the smoke run checks that every phase runs, not what it measures
        args.phases, args.heartbeat_duration, args.chat_duration = "ping,heartbeat,chat,saturation", 1.0, 1.0
        args.chatters = 10
    args.stacks = [s for s in args.stacks.split(",") if s]
    args.phases = [p for p in args.phases.split(",") if p]
    if set(args.phases) - set(PHASES):
        parser.error(f"unknown phase(s): {', '.join(set(args.phases) - set(PHASES))}")
    if "base" in args.stacks and not args.base_root:
        parser.error("the stack 'base' needs --base-root")
    try:
        args.server_env = dict(item.split("=", 1) for item in args.server_env)
    except ValueError:
        parser.error("--server-env takes NAME=VALUE")
    args.sizes = [int(s) for s in str(args.sizes).split(",") if s]
    unknown = [s for s in args.stacks if s not in STACKS]
    if unknown:
        parser.error(f"unknown stack(s): {', '.join(unknown)}")
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the servers on the way out
    limits = raise_nofile(20_000)
    if max(args.sizes) + 100 > limits[0]:
        print(f"warning: open-file limit {limits[0]} is below N={max(args.sizes)}", file=sys.stderr)
    if not args.no_pin and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    started = time.time()
    results = asyncio.run(run(args))
    print(f"\ncapacity: {args.repeats} repeat(s); medians (range); {time.time() - started:.0f} s; "
          f"server on CPU 0, load on CPU 1" + (" (not pinned)" if args.no_pin else ""))
    report(results, args)
    path = write_results("capacity", {
        "stacks": {s: STACKS[s] for s in args.stacks}, "sizes": args.sizes, "repeats": args.repeats,
        "duration": args.duration, "interval": args.interval, "max_rate": args.max_rate,
        "saturation": {"clients": args.sat_clients, "window": args.sat_window, "duration": args.sat_duration},
        "phases": args.phases, "heartbeat_duration": args.heartbeat_duration, "store": args.store,
        "chat": {"chatters": args.chatters, "rate_each": args.chat_rate, "duration": args.chat_duration},
        "base_root": args.base_root, "server_env": args.server_env,
        "pinned": not args.no_pin, "results": results,
    })
    print(f"\nwrote {path.relative_to(path.parent.parent.parent)}")
    failed = any(sum(r["open_errors"].values()) for s in results.values() for r in s["sizes"])
    return 1 if args.smoke and failed else 0


if __name__ == "__main__":
    sys.exit(main())
