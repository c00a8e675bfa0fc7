"""Churn soak: N sockets held while visitors come and go; does the server's memory come back, do its file
descriptors, does its round trip stay under the bar?

One ``chat-widget serve`` (SQLite store, a fresh file; pinned to CPU 0, this load to CPU 1 as in
bench/capacity.py). ``--held`` sockets connect (``hello`` -> ``welcome``, a ping) and keep the widget's
heartbeat as their welcome describes (capacity.WidgetSocket); then for ``--minutes`` every second
``--rate`` of them leave (half with a close frame, half cut without one, as a closed tab and a lost
network do) and as many new ones arrive, so the number held stays N. Meanwhile ``--probes`` of the held
sockets ping once a second each: the round trip p50/p99 per window. Every ``--window`` seconds: the
server's VmRSS, its open file descriptors (/proc/PID/fd), the round trips, the sockets held.

At the end the churn stops and the run waits ``--settle`` s, then takes a last sample. Verdicts (also
asserted by tests/test_churn_soak.py, ``make soak``):

- memory returns: the last sample's RSS is within ``--memory-tolerance`` (5 %) of the plateau, the
  median RSS of the windows of the run's second fifth (the first fifth is the warm-up: new visitors'
  first allocations, the store's pages);
- no descriptor leaks: the last sample's open descriptors are at most ``--fd-slack`` above the first
  window's (the same number of sockets is held);
- the round trip: every window's p99 under ``--p99-ms`` (the issue's 50 ms);
- the churn happened: at most 1 % of the arrivals failed or were skipped (more than 500 under way at
  once: the server, or this load, fell behind), and N are still held at the end.

    .venv/bin/python bench/churn.py                                 # 10,000 held, 100/s, 10 minutes
    .venv/bin/python bench/churn.py --held 2000 --minutes 2         # shorter, while developing
    .venv/bin/python bench/churn.py --server-env CHAT_WIDGET_GC=python   # CPython's own GC, to compare
    .venv/bin/python bench/churn.py --root /tmp/base15              # another checkout's server
    .venv/bin/python bench/churn.py --gc-log                        # and the server's full collections

Writes bench/results/churn-<time>.json (and churn-latest.json); bench/plot.py draws its RSS.
"""

import argparse
import asyncio
import gc
import os
import random
import signal
import statistics
import sys
import time

import capacity
from capacity import ServerUnderTest, WidgetSocket, close_all, open_client, open_many, percentile
from common import ROOT, raise_nofile, write_results


def verdicts(samples, held, memory_tolerance=0.05, fd_slack=None, p99_ms=50.0):
    """What the samples say, as {name: (passed, explanation)}: memory returns to its plateau, no
    descriptor leaks, every window's p99 under the bar. ``samples``: the windows in order, the last one
    taken after the churn stopped and settled."""
    churning = [s for s in samples if not s.get("settled")]
    fifth = max(1, len(churning) // 5)
    plateau_windows = churning[fifth:2 * fifth] or churning[:1]
    plateau = statistics.median(s["rss_kib"] for s in plateau_windows)
    last = samples[-1]
    fd_slack = fd_slack if fd_slack is not None else 20 + held // 100
    p99s = [s["rtt_ms"]["p99"] for s in churning if s["rtt_ms"]["p99"] is not None]
    worst = max(p99s, default=None)
    return {
        "memory_returns": (last["rss_kib"] <= plateau * (1 + memory_tolerance),
                           f"RSS {last['rss_kib'] / 1024:.1f} MiB at the end, plateau {plateau / 1024:.1f} MiB "
                           f"({(last['rss_kib'] / plateau - 1) * 100:+.1f} %, tolerance {memory_tolerance:.0%})"),
        "no_fd_leak": (last["fds"] <= samples[0]["fds"] + fd_slack,
                       f"{last['fds']} descriptors open at the end, {samples[0]['fds']} in the first window "
                       f"(slack {fd_slack}), {last['held']} sockets held"),
        "churned_as_asked": (last["failed"] + last.get("skipped", 0) <= max(10, last["opened"] // 100)
                             and last["held"] >= held * 0.99,
                             f"{last['opened']} arrived, {last['failed']} failed, {last.get('skipped', 0)} skipped "
                             f"(the server or the load behind), {last['held']} of {held} held at the end"),
        "p99_under_bar": (worst is not None and worst < p99_ms,
                          f"worst window p99 {worst if worst is None else round(worst, 1)} ms (bar {p99_ms:g} ms)"),
    }


class Churn:
    """The held sockets and the visitors replacing them; the load's side of one soak."""

    def __init__(self, server, probes):
        self.server = server
        self.sockets = []      # WidgetSockets held now
        self.probes = []       # the ones that ping every second (never churned)
        self.probe_count = probes
        self.rtts = []         # ping round trips (ms) of the current window
        self.opened = self.closed = self.failed = self.skipped = 0
        self.most_in_flight = 500  # arrivals and departures under way at once; beyond, an arrival is skipped
        self.errors = {}
        self.logged = 0  # lines of the server's output read for its full-collection pauses (--gc-log)

    async def fill(self, count):
        connections, errors, seconds = await open_many(self.server.url, count)
        self.sockets += [WidgetSocket(c) for c in connections]
        self.probes = self.sockets[:self.probe_count]
        return errors, seconds

    async def arrive(self):
        try:
            connection = await open_client(self.server.url)
        except Exception as error:  # noqa: BLE001 - counted
            key = type(error).__name__
            self.errors[key] = self.errors.get(key, 0) + 1
            self.failed += 1
            return
        self.sockets.append(WidgetSocket(connection))
        self.opened += 1

    async def leave(self, socket, clean):
        socket.stop()
        if clean:
            try:
                await socket.connection.close(1001, "page closed")
            except Exception:  # noqa: BLE001
                pass
        else:
            close_all([socket.connection])
        self.closed += 1

    async def churn(self, rate, seconds):
        """``rate`` visitors leave and ``rate`` arrive every second, spread over the second."""
        loop = asyncio.get_running_loop()
        pending = set()
        deadline = loop.time() + seconds
        step = 1.0 / rate
        due = loop.time()
        clean = True
        while loop.time() < deadline:
            churnable = len(self.sockets) - len(self.probes)
            if churnable > 0:
                index = random.randrange(len(self.probes), len(self.sockets))
                leaving = self.sockets[index]
                self.sockets[index] = self.sockets[-1]
                self.sockets.pop()
                pending.add(asyncio.ensure_future(self.leave(leaving, clean)))
                clean = not clean
            pending = {task for task in pending if not task.done()}
            if len(pending) < self.most_in_flight:
                pending.add(asyncio.ensure_future(self.arrive()))
            else:  # the server (or this load) is behind: counted, not queued without end
                self.skipped += 1
            due += step
            await asyncio.sleep(max(0.0, due - loop.time()))
        if pending:
            await asyncio.wait(pending, timeout=30)

    async def probe(self, stop):
        """Each probe socket pings once a second (random phase); round trips into ``self.rtts``."""
        loop = asyncio.get_running_loop()

        class Timing:  # capacity.WidgetSocket hands every frame to its phase
            @staticmethod
            def on_frame(socket, frame, now):
                if frame.get("type") == "pong" and isinstance(frame.get("t"), float):
                    self.rtts.append((now - frame["t"]) * 1000)

        async def one(socket):
            socket.phase = Timing
            await asyncio.sleep(random.uniform(0, 1))
            due = loop.time()
            while not stop.is_set():
                try:
                    await socket.ping()
                except Exception:  # noqa: BLE001 - the server closed it: seen as missing round trips
                    return
                due += 1.0
                await asyncio.sleep(max(0.0, due - loop.time()))

        await asyncio.gather(*(one(s) for s in self.probes))

    def sample(self, started, settled=False):
        rtts, self.rtts = self.rtts, []
        end = len(self.server.output)
        pauses, self.logged = self.server.gc_pauses(self.logged, end), end
        return {"t": time.perf_counter() - started, "gc": capacity.pause_summary(pauses),
                "rss_kib": self.server.rss_kib(), "fds": self.server.open_fds(),
                "held": sum(1 for s in self.sockets if s.connection.state.name == "OPEN"),
                "opened": self.opened, "closed": self.closed, "failed": self.failed, "skipped": self.skipped,
                "settled": settled,
                "rtt_ms": {"p50": percentile(rtts, 0.5), "p99": percentile(rtts, 0.99),
                           "max": max(rtts) if rtts else None, "n": len(rtts)}}


async def soak(args, log=print):
    """One soak; returns the result (samples, verdicts, settings)."""
    server = ServerUnderTest("app", None if args.no_pin else 0, root=args.root, store=args.store,
                             env=args.server_env, gc_log=args.gc_log).start()
    samples = []
    churn = Churn(server, args.probes)
    stop = asyncio.Event()
    try:
        warm, _, _ = await open_many(server.url, 20)
        close_all(warm)
        errors, seconds = await churn.fill(args.held)
        log(f"churn: {len(churn.sockets)} held after {seconds:.1f} s (errors {errors}); RSS "
            f"{server.rss_kib() / 1024:.1f} MiB, {server.open_fds()} fds")
        # The load's own collector off, as in capacity.py: its pauses would read as server latency.
        gc.collect()
        gc.freeze()
        gc.disable()
        started = time.perf_counter()
        churn.logged = len(server.output)
        probing = asyncio.ensure_future(churn.probe(stop))
        churning = asyncio.ensure_future(churn.churn(args.rate, args.minutes * 60))
        while not churning.done():
            await asyncio.wait([churning], timeout=args.window)
            samples.append(churn.sample(started))
            sample = samples[-1]
            log(f"churn: {sample['t']:6.0f} s  RSS {sample['rss_kib'] / 1024:7.1f} MiB  fds {sample['fds']:6}  "
                f"held {sample['held']:6}  rtt p50 {sample['rtt_ms']['p50'] or 0:6.2f} p99 "
                f"{sample['rtt_ms']['p99'] or 0:7.1f} max {sample['rtt_ms']['max'] or 0:7.1f} ms  "
                f"+{sample['opened']} -{sample['closed']} failed {sample['failed']} skipped {sample['skipped']}"
                + (f"  gc: {sample['gc']['count']} full, longest {sample['gc']['max_wall_ms']:.0f} ms "
                   f"({sample['gc']['max_cpu_ms']:.0f} ms CPU)" if args.gc_log else ""))
        await churning
        await asyncio.sleep(args.settle)
        samples.append(churn.sample(started, settled=True))
        log(f"churn: settled {args.settle:.0f} s: RSS {samples[-1]['rss_kib'] / 1024:.1f} MiB, fds {samples[-1]['fds']}")
        stop.set()
        await probing
    finally:
        gc.enable()
        gc.unfreeze()
        stop.set()
        for socket in churn.sockets:
            socket.stop()
        close_all([s.connection for s in churn.sockets])
        server.stop()
    results = verdicts(samples, args.held, args.memory_tolerance, args.fd_slack, args.p99_ms)
    for name, (passed, why) in results.items():
        log(f"churn: {name}: {'yes' if passed else 'NO'}: {why}")
    return {"held": args.held, "rate": args.rate, "minutes": args.minutes, "window": args.window,
            "probes": args.probes, "store": args.store, "root": str(args.root), "server_env": args.server_env,
            "errors": churn.errors, "samples": samples,
            "verdicts": {name: {"passed": passed, "why": why} for name, (passed, why) in results.items()}}


def parser():
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--held", type=int, default=10_000, help="sockets held throughout")
    options.add_argument("--rate", type=float, default=100.0, help="visitors leaving, and arriving, per second")
    options.add_argument("--minutes", type=float, default=10.0)
    options.add_argument("--window", type=float, default=10.0, help="seconds per sample")
    options.add_argument("--settle", type=float, default=10.0, help="seconds after the churn before the last sample")
    options.add_argument("--probes", type=int, default=200, help="held sockets that ping every second (never churned)")
    options.add_argument("--store", default="sqlite", choices=["sqlite", "memory"])
    options.add_argument("--root", default=str(ROOT), help="the checkout whose server runs (e.g. /tmp/base15)")
    options.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    options.add_argument("--memory-tolerance", type=float, default=0.05)
    options.add_argument("--fd-slack", type=int, default=None, help="descriptors allowed above the first window's")
    options.add_argument("--p99-ms", type=float, default=50.0)
    options.add_argument("--name", default="churn", help="results file name: bench/results/NAME-<time>.json")
    options.add_argument("--gc-log", action="store_true", help="the server's full-collection pauses per window")
    options.add_argument("--no-pin", action="store_true")
    return options


def prepare(args):
    """Parse --server-env; raise the open-file limit; pin this load to CPU 1 (the server gets CPU 0)."""
    args.server_env = {**capacity.CHAT_ENV, **dict(item.split("=", 1) for item in args.server_env)}
    raise_nofile(args.held + 2_000)
    if not args.no_pin and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    return args


def main(argv=None):
    args = prepare(parser().parse_args(argv))
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    result = asyncio.run(soak(args, log=lambda text: print(text, file=sys.stderr, flush=True)))
    path = write_results(args.name, result)
    print(f"wrote {path.relative_to(ROOT)}")
    return 0 if all(v["passed"] for v in result["verdicts"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
