"""The benchmarks' model of a connected widget (bench/capacity.py ``WidgetSocket``) paces its pings as the
widget does: while the server is silent, one ping per heartbeat tick, never one per turn of the load's loop.

A model that pinged on every turn once its silence had passed flooded the server after any stall longer
than the beat interval plus its slack: thousands of pings per socket, the load's own loop too busy to
answer Uvicorn's protocol pings, and half the held sockets closed with 1011 twenty seconds later. The
churn soak read that as the server collapsing (docs/performance.md, 2026-12-01).
"""

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import capacity  # noqa: E402


class SilentServer:
    """A connection whose server answers nothing (stalled): it records when each ping was sent, and
    ``pinged`` is set at the ``wanted``-th."""

    def __init__(self, interval, wanted):
        self.welcome = {"heartbeat": {"interval": interval, "idle_timeout": 300}}
        self.pings = []
        self.wanted = wanted
        self.pinged = asyncio.Event()
        self._never = asyncio.Event()

    async def send(self, text):
        if '"ping"' in text:
            self.pings.append(asyncio.get_running_loop().time())
            if len(self.pings) >= self.wanted:
                self.pinged.set()
        await asyncio.sleep(0)  # a send that completes at once, as on a socket with room in its buffer

    def __aiter__(self):
        return self

    async def __anext__(self):
        await self._never.wait()


async def test_a_silent_server_gets_one_ping_per_tick(monkeypatch):
    tick = 0.2
    monkeypatch.setattr(capacity, "SILENCE_SLACK", 0.0)
    monkeypatch.setattr(capacity, "PING_TICK", tick)
    connection = SilentServer(interval=0.05, wanted=4)
    socket = capacity.WidgetSocket(connection)
    try:
        await asyncio.wait_for(connection.pinged.wait(), 10)
    finally:
        socket.stop()
    gaps = [later - earlier for earlier, later in zip(connection.pings, connection.pings[1:])]
    assert min(gaps) >= tick * 0.9, f"pings {len(connection.pings)}, gaps {gaps[:5]} s (one per {tick} s tick)"
