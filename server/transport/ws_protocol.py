"""Uvicorn's websockets-sansio protocol, fixed so a handshake that websockets rejects is answered and closed.

websockets' sans-I/O parser refuses a handshake with a header line over 8192 bytes or more than 128
headers by queueing a 431 response (or, for an unparsable request, an end of stream) without emitting
an event. Uvicorn 0.54's ``WebSocketsSansIOProtocol.data_received`` only writes output while handling
events, so that answer is never sent and the TCP connection stays open, unanswered, until the client
gives up: a cheap way to hold server sockets. This subclass writes the queued answer and closes.
Measured in tests/test_bad_input.py (origin of 8 KiB, 129 headers).
"""

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class ChatWebSocketProtocol(WebSocketsSansIOProtocol):
    """``ws=ChatWebSocketProtocol`` in ``uvicorn.Config`` instead of ``ws="websockets-sansio"``."""

    def data_received(self, data):
        super().data_received(data)
        if self.handshake_initiated or self.conn.handshake_exc is None or self.transport.is_closing():
            return
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.transport.close()
