"""The HTTP fallback (long-polling, ``/poll``) against the WebSocket (``/ws``): round trip, server CPU per
message, server memory per idle visitor.

The real server (``chat-widget serve``, ``helpdesk`` consultant: keyword rules, so the consultant costs next
to nothing; memory store) runs in a subprocess on a free loopback port, pinned to CPU 0, this load process
to CPU 1, as in bench/capacity.py. Every client comes from 127.0.0.1, so the per-address limit is raised
(``CHAT_WIDGET_MAX_CONNECTIONS_PER_ADDRESS``). A *visitor* uses its transport as the widget does: one
WebSocket, or a fallback channel (tests/poll_client.py) with every frame POSTed on its own request and one
long poll always held, asked again as soon as it answers; its own HTTP client, so its own connections.

1. Round trip (one server, both transports, interleaved round by round): ``ping`` until its ``pong``, a
   visitor ``message`` until its ``ack`` and until the consultant's complete ``reply``. ``--rounds`` each,
   spread over a few visitors per transport so that none goes over the message rate the server announces.
2. Server cost (a fresh server per transport and repeat): ``--visitors`` visitors each send a message every
   1/``--rate`` s and wait for its reply, for ``--duration`` s: messages per second of server CPU (user +
   system, /proc/PID/stat).
3. Memory (a fresh server per transport and repeat): ``--idle`` visitors join and then only send the
   widget's heartbeat ``ping`` every 4 s for ``--hold`` s; server VmRSS growth over the warmed-up server
   with none, divided by the visitors, and the server CPU they cost.

    .venv/bin/python bench/fallback.py                  # defaults: about 2.5 minutes
    .venv/bin/python bench/fallback.py --rounds 500 --visitors 100 --idle 1000 --repeats 3
    .venv/bin/python bench/fallback.py --smoke          # about 15 s (five server starts), tiny sizes (CI smoke)

Writes bench/results/fallback-<time>.json (and fallback-latest.json).
"""

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time

import httpx
from websockets.asyncio.client import connect

from capacity import ORIGIN, ServerUnderTest, med, percentile, spread
from common import ROOT, raise_nofile, summary, table, write_results
from protocol import frames
from widget.core.settings import Settings

sys.path.insert(0, str(ROOT / "tests"))
from poll_client import PollChannel  # noqa: E402  (tests/poll_client.py: the widget's side of /poll)

HEARTBEAT = Settings().ping_interval  # the widget's ping interval (4 s)
QUESTION = "When are you open?"       # answered by a helpdesk rule
TRANSPORTS = ("websocket", "poll")
EXCHANGES = ("ping → pong", "message → ack", "message → reply")


class Server(ServerUnderTest):
    """``chat-widget serve`` with the helpdesk consultant; knows its pid (CPU, RSS) and its HTTP URL."""

    def __init__(self, cpu):
        super().__init__("app", cpu)
        self.command += ["--consultant", "helpdesk"]

    @property
    def http_url(self):
        return f"http://127.0.0.1:{self.port}"


class Visitor:
    """One visitor on one transport: ``send`` a frame; ``next`` frame of a type, with its arrival time."""

    def __init__(self, server):
        self.server = server
        self.inbox = asyncio.Queue()
        self.reader = None
        self.limits = None  # (messages, per, burst) from welcome
        self.exchanges = 0  # round trips done
        self.requests = 0   # HTTP requests made (the fallback only)

    def received(self, frame):
        self.inbox.put_nowait((time.perf_counter(), frame))

    async def _reading(self):
        try:
            await self.read()
            self.received({"type": "failed", "error": "closed by the server"})
        except Exception as error:  # noqa: BLE001 - handed to whoever waits for a frame
            self.received({"type": "failed", "error": repr(error)})

    async def next(self, kind, timeout=30):
        """``(perf_counter at arrival, frame)`` of the next frame of type ``kind``; others are passed over."""
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation that comes
            # as the frame arrives (CPython gh-86296), and the cancelled heartbeat then pinged on for good.
            async with asyncio.timeout(timeout):
                at, frame = await self.inbox.get()
            if frame["type"] == kind:
                return at, frame
            if frame["type"] in ("error", "failed"):
                raise RuntimeError(f"{type(self).__name__} waiting for {kind}: {frame}")

    async def join(self):
        """Open the transport, keep reading it, hello -> welcome."""
        await self.open()
        self.reader = asyncio.ensure_future(self._reading())
        await self.send(frames.hello(None, 0))
        _, welcome = await self.next("welcome")
        self.limits = frames.read_limits(welcome)
        return self

    async def round_trip(self, frame, *answers):
        """Send ``frame``; ms from the send until each of ``answers`` (frame types, in order) arrived."""
        sent = time.perf_counter()
        self.exchanges += 1
        await self.send(frame)
        return [((await self.next(kind))[0] - sent) * 1000 for kind in answers]

    async def close(self):
        self.reader.cancel()
        try:
            await self.end()
        except Exception:  # noqa: BLE001 - the server may be gone already
            pass


class SocketVisitor(Visitor):
    async def open(self):
        self.connection = await connect(self.server.url, origin=ORIGIN, proxy=None, open_timeout=30,
                                        ping_interval=None, close_timeout=1, max_queue=None)

    async def read(self):
        async for text in self.connection:
            self.received(json.loads(text))

    async def send(self, frame):
        await self.connection.send(json.dumps(frame))

    async def end(self):
        await self.connection.close()


class PollVisitor(Visitor):
    async def open(self):
        self.http = httpx.AsyncClient(base_url=self.server.http_url, timeout=40, verify=False, trust_env=False)
        self.channel = PollChannel(self.http, ORIGIN)
        answer = await self.channel.open()
        if self.channel.id is None:  # refused: an error status, or 200 with a close (server full)
            raise RuntimeError(f"POST /poll: {answer.status_code} {answer.text[:100]}")

    async def read(self):
        """The widget's poll loop: one poll held at all times, asked again as soon as it answers."""
        while self.channel.close is None:
            self.requests += 1
            for frame in (await self.channel.poll())["frames"]:
                self.received(frame)

    async def send(self, frame):
        self.requests += 1
        answer = await self.channel.send(frame)
        if answer.status_code != 204:
            raise RuntimeError(f"POST /poll/<id>: {answer.status_code} {answer.text[:100]}")

    async def end(self):
        try:
            await self.channel.end()
        finally:
            await self.http.aclose()


VISITORS = {"websocket": SocketVisitor, "poll": PollVisitor}


async def open_visitors(kind, server, count, concurrency=50):
    gate = asyncio.Semaphore(concurrency)

    async def one():
        async with gate:
            return await VISITORS[kind](server).join()

    return await asyncio.gather(*(one() for _ in range(count)))


async def close_visitors(visitors):
    await asyncio.gather(*(visitor.close() for visitor in visitors))


def counts(visitors):
    """(HTTP requests made, round trips done) by these visitors so far."""
    return sum(v.requests for v in visitors), sum(v.exchanges for v in visitors)


def per_exchange(before, after):
    """HTTP requests per round trip between two ``counts`` (the fallback's; none for sockets)."""
    return (after[0] - before[0]) / max(1, after[1] - before[1])


async def settle(server, longest=15.0):
    """Wait until the server is idle (its start-up work, such as compressing assets, is done)."""
    for _ in range(int(longest / 0.5)):
        cpu = server.cpu_seconds()
        await asyncio.sleep(0.5)
        if server.cpu_seconds() - cpu <= 0.02:
            return


def message(visitor_number, count):
    return frames.visitor_message(f"v{visitor_number}-{count}", QUESTION)


def under_rate(limits, interval):
    """True when one message every ``interval`` s stays under the announced (messages, per, burst)."""
    messages, per, _ = limits
    return interval >= per / messages


async def round_trips(args):
    server = Server(args.server_cpu).start()
    try:
        visitors = {kind: await open_visitors(kind, server, args.rtt_visitors) for kind in TRANSPORTS}
        messages, per, _ = visitors["websocket"][0].limits
        # A visitor sends one message every rtt_visitors rounds: pause so that this stays under the rate.
        pause = 1.25 * per / messages / args.rtt_visitors
        samples = {exchange: {kind: [] for kind in TRANSPORTS} for exchange in EXCHANGES}
        for number in range(args.rounds):
            for kind in TRANSPORTS if number % 2 == 0 else TRANSPORTS[::-1]:
                visitor = visitors[kind][number % args.rtt_visitors]
                pong, = await visitor.round_trip(frames.ping(number), "pong")
                ack, reply = await visitor.round_trip(message(0, number), "ack", "reply")
                for exchange, ms in zip(EXCHANGES, (pong, ack, reply)):
                    samples[exchange][kind].append(ms)
            await asyncio.sleep(pause)
        await close_visitors([v for group in visitors.values() for v in group])
    finally:
        server.stop()
    return samples


async def message_cost(kind, args):
    """Visitors sending at a steady rate, each waiting for its reply: messages per server CPU-second."""
    server = Server(args.server_cpu).start()
    try:
        visitors = await open_visitors(kind, server, args.visitors)
        interval = 1 / args.rate
        if not under_rate(visitors[0].limits, interval):
            raise SystemExit(f"--rate {args.rate} is over the server's message limit {visitors[0].limits}")
        await settle(server)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + args.duration
        latencies = []

        async def chatter(number, visitor):
            await asyncio.sleep(random.uniform(0, interval))
            due, count = loop.time(), 0
            while loop.time() < deadline:
                latencies.append((await visitor.round_trip(message(number, count), "reply"))[0])
                due, count = due + interval, count + 1
                await asyncio.sleep(max(0.0, due - loop.time()))

        made = counts(visitors)
        started, cpu = loop.time(), server.cpu_seconds()
        await asyncio.gather(*(chatter(n, v) for n, v in enumerate(visitors)))
        elapsed, cpu = loop.time() - started, server.cpu_seconds() - cpu
        requests = per_exchange(made, counts(visitors))
        await close_visitors(visitors)
    finally:
        server.stop()
    return {"messages": len(latencies), "seconds": elapsed, "server_cpu_s": cpu,
            "msgs_per_s": len(latencies) / elapsed, "msgs_per_cpu_s": len(latencies) / cpu if cpu else None,
            "requests_per_msg": requests,
            "reply_ms": {"p50": percentile(latencies, 0.5), "p90": percentile(latencies, 0.9)}}


async def heartbeat(visitor, interval, stop):
    """The widget's heartbeat, from a random phase: a ping every ``interval`` s, each answered, until
    ``stop`` is set. Not ended by cancelling alone: a cancellation can be swallowed below it (Python
    3.11's wait_for did, CPython gh-86296: two heartbeats went on pinging after ``cancel()``, and the idle
    phase waited for them for good, its event loop idle)."""
    await until(stop, random.uniform(0, interval))
    while not stop.is_set():
        await visitor.round_trip(frames.ping(time.time()), "pong")
        await until(stop, interval)


async def until(event, seconds):
    """Wait ``seconds``, or less if ``event`` is set."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass


async def stop_heartbeats(beating, stop, grace=35.0):
    """End the heartbeats: each ends at its next look at ``stop``, within a round trip's wait (30 s);
    cancelling them as well ends the waits at once where the cancellation is not swallowed."""
    stop.set()
    for task in beating:
        task.cancel()
    _, pending = await asyncio.wait(beating, timeout=grace)
    if pending:
        raise RuntimeError(f"{len(pending)} heartbeat(s) still running {grace:.0f} s after they were stopped")


async def idle_memory(kind, args):
    """RSS growth per idle visitor (joined, heartbeat only) over the warmed-up server with none."""
    server = Server(args.server_cpu).start()
    try:
        await close_visitors(await open_visitors(kind, server, 10))  # warm-up: first imports, first allocations
        await settle(server)
        before = server.rss_kib()
        visitors = await open_visitors(kind, server, args.idle)
        stop = asyncio.Event()
        beating = [asyncio.ensure_future(heartbeat(v, args.heartbeat, stop)) for v in visitors]
        await asyncio.sleep(args.heartbeat)  # every visitor has sent its first ping
        made = counts(visitors)
        started, cpu = time.perf_counter(), server.cpu_seconds()
        await asyncio.sleep(args.hold)
        elapsed, cpu = time.perf_counter() - started, server.cpu_seconds() - cpu
        requests = per_exchange(made, counts(visitors))
        after = server.rss_kib()
        failed = [task for task in beating if task.done()]
        await stop_heartbeats(beating, stop)
        await close_visitors(visitors)
    finally:
        server.stop()
    return {"visitors": args.idle, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_visitor": (after - before) / args.idle, "heartbeat_failures": len(failed),
            "requests_per_ping": requests,
            "cpu_share_per_1000": cpu / elapsed / args.idle * 1000}


async def run(args):
    results = {"round_trip": await round_trips(args), "cost": {k: [] for k in TRANSPORTS},
               "memory": {k: [] for k in TRANSPORTS}}
    print("round trips done", file=sys.stderr, flush=True)
    for repeat in range(args.repeats):
        for kind in TRANSPORTS:
            cost = await message_cost(kind, args)
            results["cost"][kind].append(cost)
            print(f"[{repeat + 1}/{args.repeats}] {kind:9} {cost['msgs_per_s']:6.1f} msg/s, "
                  f"{cost['msgs_per_cpu_s'] or 0:7.0f} msg per server CPU-s", file=sys.stderr, flush=True)
        for kind in TRANSPORTS:
            memory = await idle_memory(kind, args)
            results["memory"][kind].append(memory)
            print(f"[{repeat + 1}/{args.repeats}] {kind:9} {memory['kib_per_visitor']:6.1f} KiB per idle visitor, "
                  f"heartbeat failures {memory['heartbeat_failures']}", file=sys.stderr, flush=True)
    return results


def number(value, spec):
    return "-" if value is None else format(value, spec)


def ratio(value, baseline):
    return f"{value / baseline:.2f}x" if value and baseline else ""


def requests_shown(kind, value):
    return f"{value:.1f}" if kind == "poll" else ""


def report(results, args):
    rows = []
    for exchange in EXCHANGES:
        baseline = med(results["round_trip"][exchange]["websocket"])
        for kind in TRANSPORTS:
            values = results["round_trip"][exchange][kind]
            s = summary(values)
            rows.append([exchange, kind, s["n"], f"{s['median']:.2f}", f"{percentile(values, 0.9):.2f}",
                         f"{s['q1']:.2f}-{s['q3']:.2f}", f"{s['min']:.2f}-{s['max']:.2f}",
                         ratio(s["median"], baseline) if kind != "websocket" else ""])
    print(f"round trip, ms ({args.rounds} rounds per transport, interleaved, {args.rtt_visitors} visitors each)")
    print(table(["exchange", "transport", "n", "median", "p90", "IQR", "min-max", "poll / websocket"], rows))

    rows = []
    baseline = med([r["msgs_per_cpu_s"] for r in results["cost"]["websocket"]])
    for kind in TRANSPORTS:
        runs = results["cost"][kind]
        per_cpu = [r["msgs_per_cpu_s"] for r in runs]
        rows.append([kind, f"{med([r['msgs_per_s'] for r in runs]):,.1f} ({args.visitors * args.rate:,.0f})",
                     f"{med([r['server_cpu_s'] / r['seconds'] for r in runs]):.0%}",
                     number(med(per_cpu), ",.0f"), spread(per_cpu, "{:,.0f}".format),
                     number(med(per_cpu) and 1000 / med(per_cpu), ".2f"),
                     requests_shown(kind, med([r["requests_per_msg"] for r in runs])),
                     f"{med([r['reply_ms']['p50'] for r in runs]):.1f}",
                     ratio(baseline, med(per_cpu)) if kind != "websocket" else ""])
    print(f"\nserver cost: {args.visitors} visitors x 1 message every {1 / args.rate:.2f} s (each waits for its "
          f"reply), {args.duration:g} s, {args.repeats} repeat(s)")
    print(table(["transport", "msg/s (offered)", "server CPU", "msg per server CPU-s", "range", "CPU ms per msg",
                 "HTTP requests per msg", "reply p50 ms", "CPU per msg vs websocket"], rows))

    rows = []
    runs = results["memory"]
    kib_baseline = med([r["kib_per_visitor"] for r in runs["websocket"]])
    cpu_baseline = med([r["cpu_share_per_1000"] for r in runs["websocket"]])
    for kind in TRANSPORTS:
        kib = [r["kib_per_visitor"] for r in runs[kind]]
        cpu = med([r["cpu_share_per_1000"] for r in runs[kind]])
        rows.append([kind, args.idle, f"{med(kib):,.1f}", spread(kib, "{:,.1f}".format),
                     ratio(med(kib), kib_baseline) if kind != "websocket" else "",
                     f"{cpu:.1%}", ratio(cpu, cpu_baseline) if kind != "websocket" else "",
                     requests_shown(kind, med([r["requests_per_ping"] for r in runs[kind]])),
                     sum(r["heartbeat_failures"] for r in runs[kind]) or ""])
    print(f"\nidle visitors: joined, heartbeat ping every {args.heartbeat:g} s, measured {args.hold:g} s, "
          f"{args.repeats} repeat(s); server RSS growth over the server with none; server CPU in % of one core")
    print(table(["transport", "visitors", "KiB per visitor", "range", "vs websocket", "CPU per 1000 visitors",
                 "vs websocket", "HTTP requests per ping", "failures"], rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="round trips per transport and exchange")
    parser.add_argument("--rtt-visitors", type=int, default=5, help="visitors per transport taking turns")
    parser.add_argument("--visitors", type=int, default=100, help="concurrent visitors in the cost phase")
    parser.add_argument("--rate", type=float, default=1.5, help="messages per second per visitor (limit: 2)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the cost phase")
    parser.add_argument("--idle", type=int, default=500, help="idle visitors in the memory phase")
    parser.add_argument("--hold", type=float, default=10.0, help="seconds the idle visitors are measured")
    parser.add_argument("--heartbeat", type=float, default=HEARTBEAT, help="seconds between an idle visitor's "
                        f"pings (default: the widget's, {HEARTBEAT:g})")
    parser.add_argument("--repeats", type=int, default=2, help="repeats of the cost and memory phases")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load to separate CPUs")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, short phases (CI smoke)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.visitors, args.duration, args.idle, args.heartbeat, args.hold, args.repeats = \
            10, 5, 1.0, 20, 1.0, 1.0, 1
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the servers on the way out
    raise_nofile(20_000)  # the servers inherit it
    os.environ["CHAT_WIDGET_MAX_CONNECTIONS_PER_ADDRESS"] = str(10 * max(args.idle, args.visitors) + 100)
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2
    args.server_cpu = 0 if pin else None
    if pin:
        os.sched_setaffinity(0, {1})
    started = time.time()
    results = asyncio.run(run(args))
    print(f"\nfallback vs websocket: {time.time() - started:.0f} s; "
          + ("server on CPU 0, load on CPU 1" if pin else "not pinned"))
    report(results, args)
    path = write_results("fallback", {"args": vars(args), "results": results})
    print(f"\nwrote {path.relative_to(ROOT)}")
    failures = sum(r["heartbeat_failures"] for runs in results["memory"].values() for r in runs)
    return 1 if args.smoke and failures else 0


if __name__ == "__main__":
    sys.exit(main())
