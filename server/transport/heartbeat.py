"""The server's heartbeat: one task of the process sends ``{"type": "beat"}`` to every joined WebSocket
every ``interval`` seconds, so the widgets need not ask (docs/protocol.md, "Heartbeat and keepalive").

Why the server drives it: a widget's ``ping`` every 4 s wakes the server's event loop once per ping,
200 to 330 µs of CPU each (parse, check, answer, write): 10,000 idle widgets cost half a core and
more. A beat is one write of a frame encoded once, from a loop that is awake anyway.

How it stays cheap and smooth:

- ``BeatSlots`` (no I/O, no clock: tested with plain numbers) spreads the sockets over slots
  ``step`` seconds apart (0.1 s), each socket in the least filled one, and says which slots are due
  after a given time. 10,000 sockets at 5 s are 200 writes every 0.1 s, never 10,000 at once, so a
  visitor who is chatting waits milliseconds at most behind a slot.
- ``beat_forever`` is the task: it sleeps to the next slot, writes the frame to the slot's sockets
  and catches up on slots it overslept (a busy loop), at most one round.
- ``deliver`` writes without waiting: a socket whose write buffer is full (a client that stopped
  reading) or whose send fails (closing, gone) misses this beat; the loop goes on. Its connection
  ends by itself (idle timeout, Uvicorn's pings) and unregisters then.
"""

import asyncio
import logging

from protocol import frames

from . import wire

log = logging.getLogger("chat_widget.heartbeat")

STEP = 0.1  # seconds between slots


class BeatSlots:
    """Who is beaten when: ``add``/``discard`` sockets (any hashable key with a send callable), then
    ``due(elapsed)`` gives the sends of the slots due since the last call."""

    def __init__(self, interval, step=STEP):
        self.interval = interval
        self.count = max(1, round(interval / step))
        self.step = interval / self.count
        self._slots = [{} for _ in range(self.count)]
        self._where = {}  # key -> its slot
        self._turns = 0   # slot turns taken since the start (slot = turn % count)

    def __len__(self):
        return len(self._where)

    def add(self, key, send):
        """Beat ``key`` from now on with ``send(text)`` (a coroutine function): in the least filled slot."""
        self.discard(key)
        slot = min(range(self.count), key=lambda index: len(self._slots[index]))
        self._slots[slot][key] = send
        self._where[key] = slot

    def discard(self, key):
        slot = self._where.pop(key, None)
        if slot is not None:
            del self._slots[slot][key]

    def next_at(self):
        """Seconds since the start at which the next slot is due."""
        return (self._turns + 1) * self.step

    def due(self, elapsed):
        """The sends of every slot due by ``elapsed`` seconds since the start and not yet taken, oldest
        first; at most one round (a loop that slept longer beats each socket once, not once per round)."""
        turns = int(elapsed / self.step + 1e-9)
        first = max(self._turns, turns - self.count)
        self._turns = max(self._turns, turns)
        return [list(self._slots[turn % self.count].values()) for turn in range(first + 1, turns + 1)]


def deliver(send, text):
    """Write ``text`` with ``send`` if that needs no waiting; True when it was written.

    ``send(text)`` is a coroutine function that completes at once unless the socket's write buffer is
    full (Uvicorn's ASGI send then waits for it to drain). Stepping the coroutine once, instead of
    awaiting it, keeps one slow client from holding up the beats of every other one; a send that would
    wait is abandoned (closed), which drops only this beat.
    """
    step = send(text)
    try:
        step.send(None)
    except StopIteration:
        return True
    except (Exception, asyncio.CancelledError):  # closing or gone: ClientDisconnected, a send after the close
        return False
    step.close()
    return False


async def beat_forever(slots):
    """Beat every socket in ``slots`` every ``slots.interval`` seconds, until cancelled."""
    text = wire.encode(frames.beat())
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        await asyncio.sleep(max(0.0, started + slots.next_at() - loop.time()))
        try:
            for sends in slots.due(loop.time() - started):
                for send in sends:
                    deliver(send, text)
        except Exception:  # never silently stop: without beats every widget falls back to pinging
            log.exception("heartbeat: a round of beats failed; going on")
