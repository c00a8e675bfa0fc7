"""Channels: virtual connections carried by HTTP long-polling, for networks that break WebSockets.

A ``PollSocket`` is what ``ChatConnection`` sees instead of a WebSocket (``receive``, ``send``,
``close``), so validation, limits, sessions and replay stay the socket's own code. It adds what
plain HTTP lacks (docs/protocol.md, "HTTP fallback"):

- outgoing frames are numbered from 0 and kept until a poll's ``from`` says the widget has them, so
  an answer lost in a proxy loses nothing: the next poll asks for the same frames again;
- frames the widget POSTs wait in a small queue, taken by the connection in order;
- at most ``outbox_size`` frames wait to be collected; one more ends the channel as a dropped socket
  ends, never waiting for a poll: a widget abandons its channel whenever a request fails, and a send
  waiting on that orphan would hold up every other connection of its session (``Conversations.publish``
  sends to each in turn). The widget resumes on a new channel with replay, so nothing is lost;
- a close waits to be collected by the next poll, after the frames sent before it.

``Channel`` adds the channel's identity, its long polls (one at a time: a newer poll releases the
older) and its end: expiry, the widget closing it, its close delivered by a poll, or a full outbox.
``Channels`` is the table of them: unguessable ids, and closing every one when the server drains.
An id names the process that owns the channel, ``<instance>.<random>``: behind a proxy without
sticky sessions, another instance reads the owner from the id and forwards the request to it
(server/transport/forwarding.py).
Nothing here knows HTTP or Quart (server/transport/polling.py does).
"""

import asyncio
import logging
import re
import secrets

log = logging.getLogger("chat_widget.polling")

_INSTANCE = re.compile(r"[A-Za-z0-9_-]{1,32}")  # what new_instance_id makes, with room for longer ids


def new_instance_id():
    """A random name for this server process, 8 url-safe characters: the prefix of its channel ids."""
    return secrets.token_urlsafe(6)


class ChannelClosed(Exception):
    """The channel was closed or dropped: nothing more is sent on it or received from it."""


class PollSocket:
    """The socket-like end of a channel that one ``ChatConnection`` talks to."""

    inbox_size = 32     # frames POSTed and not yet taken by the connection; beyond, the POST gets 429
    outbox_size = 256   # frames sent and not yet collected; one more ends the channel

    def __init__(self, overflowed):
        self._inbox = asyncio.Queue(self.inbox_size)
        self.outbox = []        # encoded frames, the first one numbered self.first
        self.first = 0
        self.close_code = None
        self.close_reason = ""
        self.dropped = False    # ended without a close the widget could read
        self._overflowed = overflowed  # called when a frame finds the outbox full
        self._changed = asyncio.Event()

    @property
    def closed(self):
        return self.close_code is not None or self.dropped

    @property
    def sent(self):
        """How many frames were sent in all: the number the next frame gets."""
        return self.first + len(self.outbox)

    def notify(self):
        """Wake the polls waiting for a change."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, timeout):
        """Wait for the next change; False when ``timeout`` seconds passed first."""
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # ---- what ChatConnection calls ---------------------------------------------------------------
    async def receive(self):
        if self.closed:
            raise ChannelClosed("the channel is closed")
        return await self._inbox.get()

    async def send(self, text):
        if self.closed:
            raise ChannelClosed("the channel is closed")
        if len(self.outbox) >= self.outbox_size:
            self._overflowed()
            raise ChannelClosed(f"{self.outbox_size} frames were not collected")
        self.outbox.append(text)
        self.notify()

    async def close(self, code, reason=""):
        if self.closed:
            return
        self.close_code = code
        self.close_reason = reason
        self.notify()

    # ---- what the HTTP routes call ---------------------------------------------------------------
    def post(self, data):
        """Queue one frame from the widget (the channel is open); False when the queue is full."""
        try:
            self._inbox.put_nowait(data)
        except asyncio.QueueFull:
            return False
        return True

    def collect(self, start):
        """Forget the frames below ``start`` (the widget has them); the frames from ``start`` on.

        Raises ValueError when ``start`` names frames already forgotten or not sent yet.
        """
        if not self.first <= start <= self.sent:
            raise ValueError(f"from must be between {self.first} and {self.sent}")
        del self.outbox[:start - self.first]
        self.first = start
        return list(self.outbox)

    def drop(self):
        """End without a close frame: what a dropped socket is to the connection."""
        self.dropped = True
        self.notify()


class Channel:
    """One channel: its id, the origin that opened it, its socket, its connection's task, its polls."""

    def __init__(self, channel_id, origin, expiry, forget):
        self.id = channel_id
        self.origin = origin
        self.socket = PollSocket(self._overflowed)
        self.task = None                # the connection's task
        self.ended = asyncio.Event()    # set once the channel is gone (see end)
        self._forget = forget           # called with the channel when it ends: it leaves the table
        self._expiry = expiry           # seconds without a poll before the channel ends
        self._timer = None
        self._polls = 0                 # the newest poll's number
        self._outstanding = 0           # polls being held right now
        self._arm_expiry()

    @property
    def polled(self):
        """True while a poll is held: it answers at once when the channel closes."""
        return self._outstanding > 0

    async def poll(self, start, timeout):
        """``(frames, close)`` from frame ``start`` on, held up to ``timeout`` s while there is none.

        ``close`` is ``(code, reason)`` once the server closed the channel, else None; an answer with
        the close ends the channel (a later request gets 404). A newer poll makes this one answer at
        once with no frames (at most one poll per channel is held).
        """
        frames = self.socket.collect(start)
        self._polls += 1
        mine = self._polls
        self._outstanding += 1
        self._disarm_expiry()
        self.socket.notify()  # releases the older poll, if one is held
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not frames and not self.socket.closed and mine == self._polls:
                if not await self.socket.changed(deadline - loop.time()):
                    break
                frames = self.socket.collect(start)
        finally:
            self._outstanding -= 1
            if not self._outstanding and not self.ended.is_set():
                self._arm_expiry()
        if mine != self._polls:
            return [], None
        if self.socket.close_code is None:
            return frames, None
        self.end()  # the close is delivered: nothing is left to ask for
        return frames, (self.socket.close_code, self.socket.close_reason)

    async def close(self, code, reason):
        """Close from outside the connection (shutdown, a frame too large): the close waits for a poll,
        the connection ends now."""
        await self.socket.close(code, reason)
        if self.task is not None:
            self.task.cancel()

    def end(self):
        """Leave the table and stop everything: the connection ends as if its socket dropped."""
        if self.ended.is_set():
            return
        self.ended.set()
        self._disarm_expiry()
        self.socket.drop()
        if self.task is not None:
            self.task.cancel()
        self._forget(self)

    def _expired(self):
        log.info("channel expired after %ss without a poll", self._expiry)
        self.end()

    def _overflowed(self):
        log.info("channel dropped: %d frames were not collected", self.socket.outbox_size)
        self.end()

    def _arm_expiry(self):
        self._timer = asyncio.get_running_loop().call_later(self._expiry, self._expired)

    def _disarm_expiry(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class Channels:
    """The open channels of one server process."""

    poll_timeout = 25   # seconds a poll is held while there is nothing to send (proxies cut at 30-60 s)
    expiry_grace = 15   # a channel nobody polled for poll_timeout + this long is dropped

    def __init__(self, instance_id=None):
        self.instance_id = instance_id or new_instance_id()
        self.open = {}  # channel id -> Channel

    def create(self, origin):
        # The random part alone keeps ids unguessable (18 bytes); the prefix only says where to ask.
        channel_id = f"{self.instance_id}.{secrets.token_urlsafe(18)}"
        channel = Channel(channel_id, origin, self.poll_timeout + self.expiry_grace, self._forget)
        self.open[channel.id] = channel
        return channel

    def get(self, channel_id):
        return self.open.get(channel_id)

    def owner(self, channel_id):
        """The instance named by ``channel_id`` when it is another one, else None (ours, or no name)."""
        instance, dot, _ = channel_id.partition(".")
        if dot and instance != self.instance_id and _INSTANCE.fullmatch(instance):
            return instance
        return None

    def _forget(self, channel):
        self.open.pop(channel.id, None)

    async def close_all(self, code, reason, grace=1.0):
        """Close every channel (server draining); wait up to ``grace`` s for the polls held now to answer.

        A held poll answers at once with the close, and waiting for it lets the widget read the close
        before the server stops listening, as every socket reads its close frame. A widget between two
        polls is not waited for: its next poll fails, and it reconnects as after any lost connection.
        """
        held = [channel.ended.wait() for channel in self.open.values() if channel.polled]
        for channel in list(self.open.values()):
            await channel.close(code, reason)
        try:
            await asyncio.wait_for(asyncio.gather(*held), grace)
        except TimeoutError:
            log.warning("polls held at shutdown did not all answer within %ss", grace)
