"""The server process's garbage-collection policy: full collections that stay short at 10,000 sockets.

CPython's collector runs a full (generation 2) collection whenever the objects that survived younger
collections since the last one exceed a quarter of the long-lived heap, and a full collection walks
every tracked object: about 170 per open socket, so 1.8 million and pauses of up to 1.5 s at 10,000
sockets (docs/performance.md). Most of those objects live as long as their socket and are never garbage
while it is open. So (``freeze``, experimental: see below):

1. after start-up, one collection, then ``gc.freeze()``: the imported modules, the app and the
   knowledge index leave the collector's view for good (they live as long as the process); and the
   youngest generation is collected every ``YOUNG_THRESHOLD`` allocations instead of 700: a chat
   message's objects (its tasks, futures, frames in flight) mostly die before a young collection
   would promote them, so fewer reach the full collections (2,000 sockets, 200 messages a second:
   no full collection in three 20-s runs, against one to three of 73 to 100 ms CPU with 700; a young
   collection of 5,000 objects takes a few milliseconds);
2. after every full collection, ``gc.freeze()`` again: what survived it (mostly the open sockets) is
   not walked by the next one, so a full collection only walks what arrived since the last, and its
   pause is bounded by the churn, not by the sockets held;
3. frozen objects are still freed by reference counting, but a frozen *cycle* is never collected: a
   socket that closes would leave its frozen cycles behind. ``ChatConnection.run`` breaks the big one
   (the cancelled task, its traceback, the protocol and the socket: about 110 objects) and
   ``ChatWebSocketProtocol.connection_lost`` asyncio's transport's own, so a closed socket leaves
   nothing frozen behind; a cycle we do not know of would. So when the frozen set has
   grown by ``SWEEP_GROWTH`` since the last sweep (CPython's own quarter rule, applied to what it no
   longer sees), and at least ``SWEEP_INTERVAL`` after it, a sweep unfreezes everything, collects once,
   and freezes the survivors again: one long pause (about a second at 10,000 sockets), at most every
   ten minutes, and never while the frozen set holds steady. A server filling up grows its frozen set
   with live sockets, not garbage: without the interval it would sweep a dozen times on the way to
   10,000. The sweep runs from the event loop, never inside a collection (the collector does not
   re-enter).

**Experimental, off by default** (``CHAT_WIDGET_GC=freeze``; the default ``python`` keeps CPython's
collector). It meets the 10,000-socket latency target (docs/performance.md) but fails the churn soak:
with 100 sockets replaced a second, memory grows about 3.5 KB per replaced socket, and full collections of
about 1 s (2.6 s at the sweep) break the p99 bar. Closed sockets leave no pinned cycles (measured at 1,000
and 5,000 held), and the 20-30 s stalls seen in earlier soaks were the load's own ping flood, now fixed
(docs/performance.md, 2026-12-01). It becomes the default once ``make soak-churn`` passes with it.
"""

import gc
import logging
import time

log = logging.getLogger("chat_widget.gc")

YOUNG_THRESHOLD = 5000  # allocations between young collections (CPython: 700); the older two stay 10, 10
SWEEP_GROWTH = 0.25     # a sweep when the frozen set grew by this share since the last one ...
SWEEP_INTERVAL = 600.0  # ... and at least this many seconds have passed since it


def sweep_due(frozen, after_last_sweep, since_last_sweep, growth=SWEEP_GROWTH, interval=SWEEP_INTERVAL):
    """True when the frozen set (``gc.get_freeze_count()``) grew enough since the last sweep, and long
    enough ago (seconds), that the cycles it may hide are worth one full walk."""
    return frozen > after_last_sweep * (1 + growth) and since_last_sweep >= interval


class FreezePolicy:
    """Freeze at start-up and after every full collection; sweep when the frozen set has grown.

    ``schedule(callback)`` runs ``callback`` soon, outside the collection that asked for it (the
    event loop's ``call_soon_threadsafe``: a collection can start in any thread's allocation).
    """

    def __init__(self, schedule, growth=SWEEP_GROWTH, interval=SWEEP_INTERVAL, clock=time.monotonic):
        self.schedule = schedule
        self.growth = growth
        self.interval = interval
        self.clock = clock
        self.after_last_sweep = 0
        self.last_sweep_at = None
        self.sweeps = 0
        self.last_sweep_ms = 0.0
        self._sweep_pending = False

    def install(self):
        gc.collect()
        gc.freeze()
        self._thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, *self._thresholds[1:])
        self.after_last_sweep = gc.get_freeze_count()
        self.last_sweep_at = self.clock()
        gc.callbacks.append(self.after_collection)
        log.info("gc policy freeze: %d start-up objects frozen", self.after_last_sweep)

    def uninstall(self):
        if self.after_collection in gc.callbacks:
            gc.callbacks.remove(self.after_collection)
        gc.set_threshold(*self._thresholds)
        gc.unfreeze()

    def after_collection(self, phase, info):
        if phase != "stop" or info["generation"] != 2:
            return
        gc.freeze()
        if not self._sweep_pending and sweep_due(gc.get_freeze_count(), self.after_last_sweep,
                                                 self.clock() - self.last_sweep_at, self.growth, self.interval):
            self._sweep_pending = True
            self.schedule(self.sweep)

    def sweep(self):
        """Every object back in view for one full collection, then the survivors frozen again."""
        started = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()  # its own callback freezes the survivors
        gc.freeze()
        self.after_last_sweep = gc.get_freeze_count()
        self.last_sweep_at = self.clock()
        self.sweeps += 1
        self.last_sweep_ms = (time.perf_counter() - started) * 1000
        self._sweep_pending = False
        log.info("gc sweep: %d collected, %d frozen, %.0f ms", collected, self.after_last_sweep, self.last_sweep_ms)


def install(loop, mode):
    """Apply the policy ``mode`` (the setting ``gc``) to this process, a server or one of ``--workers``,
    once its app is built and serving; returns the policy (None for ``python``)."""
    if mode == "python":
        return None
    policy = FreezePolicy(loop.call_soon_threadsafe)
    policy.install()
    return policy
