"""Channels: virtual connections carried by HTTP long-polling, for networks that break WebSockets.

A ``PollSocket`` is what ``ChatConnection`` sees instead of a WebSocket (``receive``, ``send``,
``close``), so validation, limits, sessions and replay stay the socket's own code. It adds what
plain HTTP lacks (docs/protocol.md, "HTTP fallback"):

- outgoing frames are numbered from 0 and kept until a poll's ``from`` says the widget has them, so
  an answer lost in a proxy loses nothing: the next poll asks for the same frames again;
- frames the widget POSTs wait in a small queue, taken by the connection in order;
- at most ``outbox_size`` frames wait to be collected; beyond, ``send`` waits for a poll, as a
  socket's send waits on a full TCP buffer (memory stays bounded when a widget stops polling);
- a close waits to be collected by the next poll, after the frames sent before it.

``Channel`` adds the channel's identity, its long polls (one at a time: a newer poll releases the
older) and its expiry. ``Channels`` is the table of them: unguessable ids, and closing every one
when the server drains. Nothing here knows HTTP or Quart (server/transport/polling.py does).
"""

import asyncio
import logging
import secrets

log = logging.getLogger("chat_widget.polling")


class ChannelClosed(Exception):
    """The channel was closed or dropped: nothing more is sent on it or received from it."""


class PollSocket:
    """The socket-like end of a channel that one ``ChatConnection`` talks to."""

    inbox_size = 32     # frames POSTed and not yet taken by the connection; beyond, the POST gets 429
    outbox_size = 256   # frames sent and not yet collected; beyond, send() waits for a poll

    def __init__(self):
        self._inbox = asyncio.Queue(self.inbox_size)
        self.outbox = []        # encoded frames, the first one numbered self.first
        self.first = 0
        self.close_code = None
        self.close_reason = ""
        self.dropped = False    # ended without a close the widget could read (expired, or closed by it)
        self._changed = asyncio.Event()

    @property
    def closed(self):
        return self.close_code is not None or self.dropped

    @property
    def sent(self):
        """How many frames were sent in all: the number the next frame gets."""
        return self.first + len(self.outbox)

    def notify(self):
        """Wake everything waiting for a change (polls, a send waiting for room)."""
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
        while len(self.outbox) >= self.outbox_size and not self.closed:
            await self.changed(None)
        if self.closed:
            raise ChannelClosed("the channel is closed")
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
        """Queue one frame from the widget; False when the queue is full."""
        if self.closed:
            raise ChannelClosed("the channel is closed")
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
        if start > self.first:
            del self.outbox[:start - self.first]
            self.first = start
            self.notify()  # room for a send waiting on a full outbox
        return list(self.outbox)

    def drop(self):
        """End without a close frame: what a dropped socket is to the connection."""
        self.dropped = True
        self.notify()


class Channel:
    """One channel: its id, the origin that opened it, its socket, its connection's task, its polls."""

    def __init__(self, channel_id, origin, expire, expiry):
        self.id = channel_id
        self.origin = origin
        self.socket = PollSocket()
        self.task = None                # the connection's task, while it runs
        self._expire = expire           # called with the channel when nobody polled it for `expiry` s
        self._expiry = expiry
        self._timer = None
        self._polls = 0                 # the newest poll's number
        self._outstanding = 0           # polls being held right now
        self.collected_close = False    # a poll answer carried the close
        self._arm_expiry()

    async def poll(self, start, timeout):
        """``(frames, close)`` from frame ``start`` on, held up to ``timeout`` s while there is none.

        ``close`` is ``(code, reason)`` once the server closed the channel, else None. A newer poll
        makes this one answer at once with no frames (at most one poll per channel is held).
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
            if not self._outstanding and not self.socket.dropped:
                self._arm_expiry()
        if mine != self._polls:
            return [], None
        if self.socket.close_code is None:
            return frames, None
        self.collected_close = True
        return frames, (self.socket.close_code, self.socket.close_reason)

    def _arm_expiry(self):
        self._timer = asyncio.get_running_loop().call_later(self._expiry, self._expire, self)

    def _disarm_expiry(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def end(self):
        """Stop everything: the connection ends as if its socket dropped."""
        self._disarm_expiry()
        self.socket.drop()
        if self.task is not None:
            self.task.cancel()


class Channels:
    """The open channels of one server process."""

    poll_timeout = 25   # seconds a poll is held while there is nothing to send (proxies cut at 30-60 s)
    expiry_grace = 15   # a channel nobody polled for poll_timeout + this long is dropped

    def __init__(self):
        self.open = {}  # channel id -> Channel

    def create(self, origin):
        channel = Channel(secrets.token_urlsafe(18), origin, self._expired, self.poll_timeout + self.expiry_grace)
        self.open[channel.id] = channel
        return channel

    def get(self, channel_id):
        return self.open.get(channel_id)

    def drop(self, channel):
        """Forget the channel and end its connection (the widget closed it, or stopped polling)."""
        self.open.pop(channel.id, None)
        channel.end()

    def _expired(self, channel):
        log.info("channel expired after %ss without a poll", self.poll_timeout + self.expiry_grace)
        self.drop(channel)

    async def close_all(self, code, reason, grace=1.0):
        """Close every channel (server draining), then wait up to ``grace`` s for polls to collect it.

        A widget between two polls asks again within milliseconds; waiting a moment lets it read the
        close before the server stops listening, as every socket reads its close frame.
        """
        for channel in list(self.open.values()):
            await channel.socket.close(code, reason)
            if channel.task is not None:
                channel.task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline and not all(channel.collected_close for channel in self.open.values()):
            await asyncio.sleep(0.05)
