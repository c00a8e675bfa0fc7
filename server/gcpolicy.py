"""The server process's garbage-collection policy: full collections that stay short at 10,000 sockets.

CPython's collector runs a full (generation 2) collection whenever the objects that survived younger
collections since the last one exceed a quarter of the long-lived heap, and a full collection walks
every tracked object: about 170 per open socket under Quart (89 now), so 1.8 million and pauses of up to 1.5 s at 10,000
sockets (docs/performance.md). Most of those objects live as long as their socket and are never garbage
while it is open. So (``freeze``, the default; ``CHAT_WIDGET_GC=python`` keeps CPython's collector):

1. after start-up, one collection, then ``gc.freeze()``: the imported modules, the app and the
   knowledge index leave the collector's view for good (they live as long as the process); and the
   youngest generation is collected every ``YOUNG_THRESHOLD`` allocations instead of 700: a chat
   message's objects (its tasks, futures, frames in flight) mostly die before a young collection
   would promote them, so fewer reach the full collections (2,000 sockets, 200 messages a second:
   no full collection in three 20-s runs, against one to three of 73 to 100 ms CPU with 700; a young
   collection of 5,000 objects takes a few milliseconds);
2. after every full collection, ``gc.freeze()`` again: what survived it (mostly the open sockets) is
   not walked by the next one, so a full collection only walks what arrived since the last; and one
   full collection every ``COLLECT_EVERY`` (a quarter second) from the event loop, so that is a quarter
   second's worth (CPython's own quarter rule let minutes of chat or churn pile up: 0.4–1.1 s walks at
   10,000 sockets). The walk is a pointer chase through objects spread over the whole heap, so it costs
   more per object the more there are: at 10,000 sockets and 100 replaced a second, one collection a
   second took 30–60 ms, four took 3–11 ms each, less in total;
3. frozen objects are still freed by reference counting, but a frozen *cycle* is never collected: a
   socket that closes would leave its frozen cycles behind. ``ChatConnection.run`` breaks the big one
   (the cancelled task, its traceback, the protocol and the socket: about 110 objects) and
   ``ChatWebSocketProtocol.connection_lost`` asyncio's transport's and websockets' parser's (3.4 KB a
   socket, which the soak's memory showed), so a closed socket leaves nothing frozen behind; a cycle we
   do not know of would. So when the heap (its allocated blocks:
   frozen garbage is blocks never freed) has grown by ``SWEEP_GROWTH`` since the last sweep (CPython's
   own quarter rule) beyond ``PER_CONNECTION`` blocks for each socket opened since, and at least
   ``SWEEP_INTERVAL`` after it, a sweep unfreezes everything, collects once, and freezes the survivors
   again: one long pause (about a second at 10,000 sockets), at most every ten minutes, and never
   while the heap holds steady. A server filling up grows its heap with live sockets, not garbage:
   those are not counted as growth, or a server that just filled up would sweep for nothing.
   The sweep runs from the event loop, never inside a collection (the collector does not re-enter).

**The default since it passes the churn soak** (``make soak-churn``: 10,000 held, 100 replaced a second
for 10 minutes): memory +0.2 % over its plateau, worst window p99 26.5 ms, no descriptor leak, churned as
asked (docs/performance.md, 2026-12-01). CPython's collector passes memory and fails latency there: one
full collection of about 800 ms every 20 s.
"""

import gc
import logging
import sys
import time

log = logging.getLogger("chat_widget.gc")

YOUNG_THRESHOLD = 5000  # allocations between young collections (CPython: 700); the older two stay 10, 10
COLLECT_EVERY = 0.25    # seconds between the policy's own full collections (each walks only what came since)
SWEEP_GROWTH = 0.25     # a sweep when the heap grew by this share more than its sockets explain ...
SWEEP_INTERVAL = 600.0  # ... and at least this many seconds have passed since the last one
PER_CONNECTION = 500    # allocated blocks an open socket may explain (measured: about 210 each, 2026-12-01)


def sweep_due(blocks, after_last_sweep, since_last_sweep, growth=SWEEP_GROWTH, interval=SWEEP_INTERVAL,
              new_connections=0):
    """True when the heap (``sys.getallocatedblocks()``) grew enough since the last sweep, beyond what
    ``new_connections`` more open sockets than then explain, and long enough ago (seconds), that the
    frozen cycles it may hold are worth one full walk.

    The heap, not the frozen set: counting the frozen set (``gc.get_freeze_count()``) walks all of it,
    about 30 ms at 2,000 sockets in the server and a few hundred ms at 10,000, where the heap's blocks are
    counted in a fraction of a millisecond.
    Frozen garbage is blocks that are never freed, so it shows there too."""
    explained = after_last_sweep + PER_CONNECTION * max(0, new_connections)
    return blocks > explained * (1 + growth) and since_last_sweep >= interval


class FreezePolicy:
    """Freeze at start-up and after every full collection; sweep when the frozen set has grown.

    ``schedule(callback)`` runs ``callback`` soon, outside the collection that asked for it (the
    event loop's ``call_soon_threadsafe``: a collection can start in any thread's allocation).
    """

    def __init__(self, schedule, growth=SWEEP_GROWTH, interval=SWEEP_INTERVAL, clock=time.monotonic,
                 connections=lambda: 0):
        self.schedule = schedule
        self.growth = growth
        self.interval = interval
        self.clock = clock
        self.connections = connections  # how many sockets are open now
        self.after_last_sweep = 0  # sys.getallocatedblocks() after it
        self.connections_at_sweep = 0
        self.last_sweep_at = None
        self.sweeps = 0
        self.last_sweep_ms = 0.0
        self._sweep_pending = False
        self._timer = None  # the next of collect_every's collections

    def install(self):
        gc.collect()
        gc.freeze()
        self._thresholds = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, *self._thresholds[1:])
        self.after_last_sweep = sys.getallocatedblocks()
        self.last_sweep_at = self.clock()
        gc.callbacks.append(self.after_collection)
        log.info("gc policy freeze: %d start-up objects frozen", gc.get_freeze_count())

    def uninstall(self):
        if self._timer is not None:
            self._timer.cancel()
        if self.after_collection in gc.callbacks:
            gc.callbacks.remove(self.after_collection)
        gc.set_threshold(*self._thresholds)
        gc.unfreeze()

    def after_collection(self, phase, info):
        if phase != "stop" or info["generation"] != 2:
            return
        gc.freeze()
        if not self._sweep_pending and sweep_due(sys.getallocatedblocks(), self.after_last_sweep,
                                                 self.clock() - self.last_sweep_at, self.growth, self.interval,
                                                 self.connections() - self.connections_at_sweep):
            self._sweep_pending = True
            self.schedule(self.sweep)

    def collect_every(self, loop, seconds):
        """A full collection every ``seconds`` from ``loop`` (its callback freezes the survivors), so
        each walks that long's new objects, not the minutes' worth CPython's quarter rule lets pile up
        (about 400 ms of walking at 10,000 sockets and 1,000 messages a second)."""
        def collect():
            gc.collect()
            self._timer = loop.call_later(seconds, collect)

        self._timer = loop.call_later(seconds, collect)

    def sweep(self):
        """Every object back in view for one full collection, then the survivors frozen again."""
        started = time.perf_counter()
        gc.unfreeze()
        collected = gc.collect()  # its own callback freezes the survivors
        gc.freeze()
        self.after_last_sweep = sys.getallocatedblocks()
        self.connections_at_sweep = self.connections()
        self.last_sweep_at = self.clock()
        self.sweeps += 1
        self.last_sweep_ms = (time.perf_counter() - started) * 1000
        self._sweep_pending = False
        log.info("gc sweep: %d collected, %d blocks allocated, %.0f ms", collected, self.after_last_sweep,
                 self.last_sweep_ms)


def install(loop, mode, connections=lambda: 0, every=COLLECT_EVERY):
    """Apply the policy ``mode`` (the setting ``gc``) to this process, a server or one of ``--workers``,
    once its app is built and serving; returns the policy (None for ``python``). ``connections()``: the
    sockets open now."""
    if mode == "python":
        return None
    policy = FreezePolicy(loop.call_soon_threadsafe, connections=connections)
    policy.install()
    policy.collect_every(loop, every)
    return policy
