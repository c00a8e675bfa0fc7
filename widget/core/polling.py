"""The widget's side of the HTTP fallback (long-polling, docs/protocol.md), as a sans-I/O channel.

When WebSockets fail on the path, a ``PollChannel`` stands in for the socket: the shell carries out
the ``Request`` objects it returns (one ``fetch`` each) and feeds every answer back to ``answered``;
in return the channel tells what a WebSocket would have: ``Opened``, ``Frame`` (decoded) and
``Closed``. So the client and the lifecycle cannot tell the transports apart.

- ``POST <base>?v=1`` opens the channel (or answers a refusal with its close code, as a socket
  accepted only to be closed would); ``GET <base>/<channel>?from=n`` is held by the server until
  there is something to deliver (frames are numbered: asking again ``from`` the same number gets the
  same frames, so an answer lost on the way loses nothing); ``POST <base>/<channel>`` sends one frame,
  one at a time so the server sees them in order; ``POST <base>/<channel>/close`` ends it.
- Any failed request ends the channel as a dropped socket would (close 1006): the lifecycle then
  reconnects and the session resumes, so nothing is lost either way. A ``close`` in a poll answer is
  the server closing the connection, with its code.
"""

import json

from protocol import close, frames
from widget.core.actions import value_class

OPEN = "open"
POLL = "poll"
SEND = "send"
CLOSE = "close"


# What the channel asks of the shell, and tells it (value classes, compared by value).
Request = value_class("Request", ("kind", "method", "url", "body"), {"body": None})  # an HTTP request to make
Opened = value_class("Opened", ())                                # the channel is open: as a socket's open
Frame = value_class("Frame", ("frame",))                          # a decoded frame arrived
Closed = value_class("Closed", ("code", "reason", "clean"))       # the channel ended: as a socket's close


class PollChannel:
    def __init__(self, base_url):
        self.base_url = base_url
        self.channel = None
        self.next = 0          # number of the first frame not yet received
        self.closed = False
        self._outbox = []      # frames (text) waiting for the one in flight
        self._sending = False

    def open(self):
        return [Request(OPEN, "POST", "%s?v=%d" % (self.base_url, frames.VERSION))]

    def send(self, text):
        if self.closed:
            return []
        self._outbox.append(text)
        return self._send_next()

    def close(self):
        """The widget ends the channel (no Closed follows, as for a socket we close ourselves)."""
        if self.closed:
            return []
        self.closed = True
        if self.channel is None:
            return []
        return [Request(CLOSE, "POST", self._url("/close"))]

    def answered(self, kind, status, text):
        """A request of ``kind`` finished: HTTP ``status`` (0: no answer at all) and the body text."""
        if self.closed:
            return []
        if kind == OPEN:
            return self._opened(status, text)
        if kind == POLL:
            return self._polled(status, text)
        if kind == SEND:
            return self._sent(status)
        return []

    # ---- internals -------------------------------------------------------------------------------
    def _url(self, suffix=""):
        return "%s/%s%s" % (self.base_url, self.channel, suffix)

    def _poll(self):
        return Request(POLL, "GET", "%s?from=%d" % (self._url(), self.next))

    def _send_next(self):
        if self._sending or self.channel is None or not self._outbox:
            return []
        self._sending = True
        return [Request(SEND, "POST", self._url(), self._outbox.pop(0))]

    def _opened(self, status, text):
        answer = _json(text) if status == 200 else None
        if isinstance(answer, dict) and isinstance(answer.get("close"), dict):
            return self._server_closed(answer["close"])  # refused with a code (full: 1013, version: 4001)
        channel = answer.get("channel") if isinstance(answer, dict) else None
        if not isinstance(channel, str) or not channel:
            return self._fail("could not open an HTTP channel (HTTP %s)" % status)
        self.channel = channel
        return [Opened(), self._poll()] + self._send_next()

    def _polled(self, status, text):
        answer = _json(text) if status == 200 else None
        if not isinstance(answer, dict) or not isinstance(answer.get("frames"), list) or \
                not isinstance(answer.get("from"), int):
            return self._fail("poll failed (HTTP %s)" % status)
        first = answer["from"]
        if first > self.next:
            return self._fail("poll skipped frames %d to %d" % (self.next, first - 1))
        out = []
        for frame in answer["frames"][self.next - first:]:
            out.append(Frame(frame))
            self.next += 1
        if isinstance(answer.get("close"), dict):
            return out + self._server_closed(answer["close"])
        return out + [self._poll()]

    def _server_closed(self, ended):
        self.closed = True
        code = ended.get("code")
        return [Closed(code if isinstance(code, int) else close.ABNORMAL, str(ended.get("reason") or ""), True)]

    def _sent(self, status):
        self._sending = False
        if status == 413:  # the server also closes the channel with 1009; say so at once
            self.closed = True
            return [Closed(close.TOO_BIG, "message too big", True)]
        if status == 410:  # the server closed the channel: its close, with the real code, comes in the poll
            return []
        if not 200 <= status < 300:  # 429 too: the widget paces itself far below the server's queue
            return self._fail("send failed (HTTP %s)" % status)
        return self._send_next()

    def _fail(self, reason):
        self.closed = True
        return [Closed(close.ABNORMAL, reason, False)]


def _json(text):
    try:
        return json.loads(text)
    except ValueError:
        return None
