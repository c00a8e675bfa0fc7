"""Quart's websocket object without two costs it pays on every frame (``app.websocket_class``).

Quart's ``Websocket.send`` first yields to the event loop (``await asyncio.sleep(0)``: a handler
sending in a tight loop would otherwise starve the others) and then calls ``accept()``, as
``receive`` does; ``accept()`` is idempotent but builds a Werkzeug ``Headers`` each time. Here:

- once the socket is accepted, ``receive`` and ``send`` go straight to the ASGI connection;
- ``send`` does not yield first. Our sends never loop without yielding: a pong answers a received
  frame (and ``ChatConnection.run`` yields every ``YIELD_EVERY`` frames, since frames already queued
  are received without yielding), a reply chunk follows the consultant's own ``await`` and Uvicorn's
  send waits while the client does not read (its ``writable`` event).

Together they were about 40 % of the server's CPU per ping (bench/capacity.py's saturation, 2026-11-30:
about 23,000 → 40,000 pings per server CPU-second). What is sent and received, and in which order, is
unchanged (tests/test_wire.py).
"""

from quart.wrappers.websocket import Websocket


class ChatWebsocket(Websocket):
    _accepted = False  # this object's own record: Quart keeps its own in the ASGI connection

    async def accept(self, headers=None, subprotocol=None):
        await super().accept(headers, subprotocol)
        self._accepted = True

    async def receive(self):
        if not self._accepted:
            await self.accept()
        return await self._receive()

    async def send(self, data):
        if not self._accepted:
            await self.accept()
        await self._send(data)
