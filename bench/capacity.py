"""Server capacity: sockets held, memory per socket, round-trip latency under load, saturation throughput.

For each server stack (a fresh server process per step) and each N:

1. open N WebSocket connections from this process (asyncio + ``websockets`` client, loopback, with the
   Origin header the server allows); each sends ``hello`` and a ``ping`` and gets the answers (our
   app: welcome + pong; the echo floor: both echoed), so every socket has exchanged messages;
2. memory per socket = growth of the server's VmRSS (``/proc/PID/status``) over a warmed-up baseline,
   divided by the sockets held;
3. every client pings at a steady rate for ``--duration`` seconds (1 per second each, the total capped
   at ``--max-rate``): round trip p50/p99/max and the answers per second actually served.

Then saturation: ``--sat-clients`` connections each keeping ``--sat-window`` pings in flight for
``--sat-duration`` seconds: answered messages per second.

Stacks: ``app`` = ``chat-widget serve`` (Quart + Uvicorn websockets-sansio, deflate off); ``echo`` =
bench/echo_server.py (bare ``websockets``, the floor); optional ``app-wsproto`` (Uvicorn ws=wsproto)
and ``app-hypercorn`` (Hypercorn), both via bench/app_server.py. The server is pinned to CPU 0 and this
load process to CPU 1 (``--no-pin`` to turn off). Both raise the soft open-file limit to the hard limit.

    .venv/bin/python bench/capacity.py                        # app + echo, N = 100, 1000, 5000, 10000
    .venv/bin/python bench/capacity.py --stacks app,echo,app-wsproto,app-hypercorn --sizes 1000,10000
    .venv/bin/python bench/capacity.py --smoke                # N = 50, short phases (CI smoke)

Writes bench/results/capacity-<time>.json (and capacity-latest.json).
"""

import argparse
import asyncio
import gc
import itertools
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

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
}


class ServerUnderTest:
    """A server process on a loopback port; knows its pid (for /proc) and stops cleanly."""

    def __init__(self, stack, cpu=None):
        self.stack = stack
        self.cpu = cpu
        self.port = free_port()
        python = sys.executable
        if stack == "app":
            command = [python, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                       "--allow-origin", ORIGIN, "--log-level", "warning"]
            if "--store" in serve_options():
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
        self.process = subprocess.Popen(self.command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1", **ONE_ADDRESS_MANY_VISITORS})
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
    await asyncio.wait_for(connection.recv(), 30)
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
                await connection.recv()
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


async def measure_size(server, size, args):
    # Warm up: a few sockets opened and closed, so lazy imports and first allocations are not counted.
    warm, _, _ = await open_many(server.url, 20)
    close_all(warm)
    await asyncio.sleep(1.0)
    before = server.rss_kib()
    connections, errors, open_seconds = await open_many(server.url, size)
    await asyncio.sleep(1.0)
    after = server.rss_kib()
    held = len(connections)
    per_socket = (after - before) / held if held else None
    interval = max(args.interval, held / args.max_rate) if held else args.interval
    # The load process is the measuring instrument: its own garbage collector pausing (10,000 client
    # connections are a big heap) would show up as server latency. Off while measuring.
    gc.collect()
    gc.freeze()
    gc.disable()
    cpu, own = server.cpu_seconds(), time.process_time()
    try:
        rtts, failures, elapsed = await steady_load(connections, args.duration, interval)
    finally:
        gc.enable()
        gc.unfreeze()
    cpu, own = server.cpu_seconds() - cpu, time.process_time() - own
    alive = sum(1 for c in connections if c.state.name == "OPEN")
    close_all(connections)
    return {
        "n": size, "held": held, "alive_after_load": alive, "open_errors": errors, "open_seconds": open_seconds,
        "rss_before_kib": before, "rss_after_kib": after, "kib_per_socket": per_socket,
        "interval_s": interval, "answers": len(rtts), "answers_per_s": len(rtts) / elapsed if elapsed else 0,
        "load_failures": failures, "server_cpu_share": cpu / elapsed if elapsed else None,
        "load_cpu_share": own / elapsed if elapsed else None,
        "rtt_ms": {"p50": percentile(rtts, 0.50), "p99": percentile(rtts, 0.99), "max": max(rtts) if rtts else None,
                   "mean": statistics.fmean(rtts) if rtts else None},
    }


async def run(args):
    results = {stack: {"sizes": [], "saturation": []} for stack in args.stacks}
    server_cpu = None if args.no_pin else 0
    for repeat in range(args.repeats):
        for size in args.sizes:
            for stack in args.stacks:
                server = ServerUnderTest(stack, server_cpu).start()
                try:
                    result = await measure_size(server, size, args)
                finally:
                    server.stop()
                results[stack]["sizes"].append(result)
                rtt = result["rtt_ms"]
                print(f"[{repeat + 1}/{args.repeats}] {stack:13} N={size:>6} held {result['held']:>6} "
                      f"{result['kib_per_socket'] or 0:6.1f} KiB/socket  rtt p50 {rtt['p50'] or 0:7.2f} "
                      f"p99 {rtt['p99'] or 0:8.2f} ms  {result['answers_per_s']:8.0f} msg/s  server CPU {result['server_cpu_share']:.0%} load CPU {result['load_cpu_share']:.0%}  "
                      f"errors {sum(result['open_errors'].values())} {list(result['open_errors'])[:1]}",
                      file=sys.stderr, flush=True)
        for stack in args.stacks:
            server = ServerUnderTest(stack, server_cpu).start()
            try:
                result = await saturate(server, args.sat_clients, args.sat_window, args.sat_duration)
            finally:
                server.stop()
            results[stack]["saturation"].append(result)
            print(f"[{repeat + 1}/{args.repeats}] {stack:13} saturation {result['msgs_per_s']:9.0f} msg/s, server CPU "
                  f"{result['server_cpu_share']:.0%}, {result['msgs_per_cpu_s'] or 0:9.0f} msg per CPU-second "
                  f"({result['clients']} clients x {args.sat_window} in flight)", file=sys.stderr, flush=True)
    return results


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values, fmt):
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return ""
    return f"{fmt(min(values))}-{fmt(max(values))}"


def report(results, args):
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
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load to separate CPUs")
    parser.add_argument("--smoke", action="store_true", help="N=50, 1 repeat, 2 s phases (CI smoke)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes, args.repeats, args.duration, args.sat_duration, args.sat_clients = "50", 1, 2.0, 2.0, 8
    args.stacks = [s for s in args.stacks.split(",") if s]
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
        "pinned": not args.no_pin, "results": results,
    })
    print(f"\nwrote {path.relative_to(path.parent.parent.parent)}")
    failed = any(sum(r["open_errors"].values()) for s in results.values() for r in s["sizes"])
    return 1 if args.smoke and failed else 0


if __name__ == "__main__":
    sys.exit(main())
