"""Uvicorn's protocols, fixed: refused handshakes and oversized requests are answered and closed, under
the header limits of ``headers.py``.

- **websockets' parser** refuses a handshake with a header line over ``MAX_LINE_LENGTH`` bytes or more
  than ``MAX_NUM_HEADERS`` headers (module globals it reads at parse time; 8192 and 128 by default) by
  queueing a 431 response, or, for an unparsable request, an end of stream, without emitting an event.
  Uvicorn 0.54's ``WebSocketsSansIOProtocol.data_received`` only writes output while handling events,
  so that answer was never sent and the TCP connection stayed open, unanswered, until the client gave
  up: a cheap way to hold server sockets. ``ChatWebSocketProtocol`` writes the queued answer and closes.
  The globals are set here to the header limit itself, so the parser refuses only what the app refuses
  anyway (a 12 KB cookie line used to get 431 here while HTTP routes accepted it).
- **h11** (``ChatH11Protocol``; it parses every request first, the handshake included) refuses a head
  still incomplete beyond ``h11_max_incomplete_event_size``, which is no limit on complete heads: one
  that arrives in a single read passes at any size. So the limit is the app's (``headers.install``,
  ``chat_socket``), and h11's buffer is only a ceiling above it: the header budget plus as much again
  for the request line. Uvicorn answers h11's refusal with 400 whatever h11 suggests; this answers
  h11's suggestion (431 for a head too long).

Measured in tests/test_bad_input.py and tests/test_large_headers.py.
"""

import http
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets import http11

from .headers import MAX_HEADER_BYTES, MAX_HEADERS

HEAD_BUFFER_BYTES = 2 * MAX_HEADER_BYTES  # uvicorn's h11_max_incomplete_event_size (cli.uvicorn_config)

http11.MAX_LINE_LENGTH = MAX_HEADER_BYTES  # one line (the request line too) can take the whole budget
http11.MAX_NUM_HEADERS = MAX_HEADERS


class _RefusalIsNoError(logging.Filter):
    """Uvicorn 0.54 logs "ASGI callable returned without completing handshake." at ERROR after every
    handshake the app answers with an HTTP status (its refusal path never marks the handshake done), so
    every 403, 429, 431 and 503 read as a server bug in the log. Our app always accepts, refuses with a
    status or raises (which Uvicorn logs on its own), so that line never says anything else here."""

    def filter(self, record):
        return record.getMessage() != "ASGI callable returned without completing handshake."


logging.getLogger("uvicorn.error").addFilter(_RefusalIsNoError())


class ChatWebSocketProtocol(WebSocketsSansIOProtocol):
    """``ws=ChatWebSocketProtocol`` in ``uvicorn.Config`` instead of ``ws="websockets-sansio"``."""

    def data_received(self, data):
        super().data_received(data)
        if self.handshake_initiated or self.conn.handshake_exc is None or self.transport.is_closing():
            return
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.transport.close()

    def start_keepalive(self):
        # Called once the handshake's 101 is written: Uvicorn no longer reads the handshake's request and
        # response, which it would keep for the socket's life (about 4 KiB of headers per socket,
        # docs/performance.md); the app has the scope, headers included.
        self.request = self.response = None
        super().start_keepalive()

    def connection_lost(self, exc):
        super().connection_lost(exc)
        # asyncio's socket transport keeps its read callback, a bound method of itself: a cycle only a full
        # collection frees, and none once frozen (server/gcpolicy.py). Cut, the closed transport (about a
        # KiB) goes with its last reference. Only asyncio's own selector transport has it (not uvloop's,
        # not TLS's), hence the check.
        if hasattr(self.transport, "_read_ready_cb"):
            self.transport._read_ready_cb = None
        # websockets' protocol runs its parser as a generator whose frame holds the protocol, and after an
        # unclean end its parser_exc holds a traceback through that frame: cycles of about 45 blocks
        # (3.4 KB) per closed socket, which the freeze policy kept for good (its churn soak's memory
        # growth, docs/performance.md). Nothing is parsed after the connection is lost: the generator
        # closed and the exception dropped, the protocol goes by reference counting.
        self.conn.parser.close()
        self.conn.parser_exc = None


class _Connection(h11.Connection):
    """h11's connection, remembering the status h11 suggests for the client's last error (431: too long)."""

    refusal = 400

    def next_event(self):
        try:
            return super().next_event()
        except h11.RemoteProtocolError as error:
            self.refusal = error.error_status_hint
            raise


class ChatH11Protocol(H11Protocol):
    """``http=ChatH11Protocol`` in ``uvicorn.Config``: h11 (never httptools, whose limits differ), with
    ``h11_max_incomplete_event_size`` as the ceiling, and 431 when h11 refuses a head for its size."""

    def __init__(self, config, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        self.conn = _Connection(h11.SERVER, config.h11_max_incomplete_event_size or HEAD_BUFFER_BYTES)

    def send_400_response(self, msg):
        if self.conn.refusal != http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE:
            return super().send_400_response(msg)
        status = http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE
        body = f"{status.phrase}: this server accepts {MAX_HEADER_BYTES} bytes of headers\n".encode("ascii")
        response = h11.Response(status_code=status.value, reason=status.phrase,
                                headers=[(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")])
        for event in (response, h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()
        return None
