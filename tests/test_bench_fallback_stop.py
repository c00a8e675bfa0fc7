"""bench/fallback.py's idle phase ends its visitors' heartbeats even when a cancellation is swallowed.

It hung three times (once in a fresh-clone smoke run, twice in full runs), its event loop idle: heartbeat
tasks had been cancelled while their pong arrived, Python 3.11's ``asyncio.wait_for`` swallowed the
cancellation (CPython gh-86296), and they pinged on for good while the phase waited for them.
"""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import fallback  # noqa: E402


class SwallowingVisitor:
    """A visitor whose round trip swallows a cancellation, as the race in wait_for does."""

    def __init__(self):
        self.pings = 0

    async def round_trip(self, frame, *answers):
        self.pings += 1
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            pass  # swallowed: the task goes on as if nothing had happened
        return [0.1]


def test_heartbeats_that_swallow_their_cancellation_still_stop():
    async def scenario():
        visitors = [SwallowingVisitor() for _ in range(5)]
        stop = asyncio.Event()
        beating = [asyncio.ensure_future(fallback.heartbeat(v, 0.02, stop)) for v in visitors]
        while min(v.pings for v in visitors) < 2:  # every heartbeat is running
            await asyncio.sleep(0.01)
        await asyncio.wait_for(fallback.stop_heartbeats(beating, stop, grace=5), 10)
        return beating

    beating = asyncio.run(scenario())
    assert all(task.done() for task in beating)


def test_a_visitor_waiting_for_a_frame_is_cancelled_even_as_the_frame_arrives():
    """The race itself: cancel the waiting task in the same turn as its frame arrives."""
    async def scenario():
        visitor = fallback.Visitor(server=None)
        waiting = asyncio.ensure_future(visitor.next("pong", timeout=5))
        await asyncio.sleep(0)  # now suspended in next()
        visitor.received({"type": "pong"})
        waiting.cancel()
        try:
            await waiting
        except asyncio.CancelledError:
            return "cancelled"
        return "swallowed"

    assert asyncio.run(scenario()) == "cancelled"
