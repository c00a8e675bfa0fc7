"""The chat WebSocket endpoint ``/ws``: origin check before upgrade, then the v1 protocol."""

import asyncio
import itertools
import logging

from quart import Blueprint, Response, current_app, websocket
from quart_cors import cors_exempt

from . import protocol

log = logging.getLogger("chat_widget.socket")
bp = Blueprint("socket", __name__)
_reply_ids = itertools.count(1)


def _refuse(status, reason, why):
    log.warning("handshake rejected status=%s origin=%r reason=%s", status, websocket.headers.get("Origin"), why)
    current_app.extensions["chat_hub"].rejected_total += 1
    return Response(reason, status=status, content_type="text/plain")


@bp.websocket("/ws")
@cors_exempt
async def chat_socket():
    config = current_app.extensions["chat_config"]
    hub = current_app.extensions["chat_hub"]
    allowed, why = current_app.extensions["chat_origins"].check(
        websocket.headers.get("Origin"), websocket.headers.get("Host"), websocket.scheme
    )
    if not allowed:
        return _refuse(403, "Origin not allowed\n", why)
    if hub.draining:
        return _refuse(503, "Server is restarting\n", "draining for shutdown")
    if hub.full:
        return _refuse(503, "Server is full\n", f"connection limit {hub.max_connections} reached")

    await websocket.accept()
    version = websocket.args.get("v", str(protocol.VERSION))
    if version != str(protocol.VERSION):
        log.warning("handshake rejected reason=unsupported protocol version v=%r", version[:20])
        await websocket.close(protocol.CLOSE_UNSUPPORTED_VERSION, f"unsupported protocol version; server speaks v{protocol.VERSION}")
        return

    connection_id = hub.register()
    log.info("connection opened id=%s origin=%s open=%d", connection_id, websocket.headers.get("Origin"), len(hub.open))
    session = ChatSession(config, current_app.extensions["chat_consultant"])
    try:
        await session.run()
    finally:
        duration = hub.unregister(connection_id)
        log.info("connection closed id=%s duration=%.1fs", connection_id, duration)


class ChatSession:
    """One visitor's socket: reads frames, answers pings, acknowledges messages, streams replies."""

    def __init__(self, config, consultant):
        self.config = config
        self.consultant = consultant
        self.history = []
        self.replies = set()

    async def send(self, frame):
        await websocket.send(protocol.encode(frame))

    async def run(self):
        await self.send(protocol.welcome(self.config.contact))
        try:
            while True:
                data = await websocket.receive()
                size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
                if size > self.config.max_message_bytes:
                    await websocket.close(protocol.CLOSE_TOO_BIG, f"frame larger than {self.config.max_message_bytes} bytes")
                    return
                try:
                    frame = protocol.parse_client_frame(data, self.config.max_message_bytes)
                except protocol.FrameError as error:
                    await self.send(protocol.error(error.code, str(error), error.frame_id))
                    continue
                await self.handle(frame)
        finally:
            for task in self.replies:
                task.cancel()
            if self.replies:
                await asyncio.gather(*self.replies, return_exceptions=True)

    async def handle(self, frame):
        if frame["type"] == "ping":
            pong = {"type": "pong"}
            if "t" in frame:
                pong["t"] = frame["t"]
            await self.send(pong)
        elif frame["type"] == "message":
            self.history.append({"author": "visitor", "text": frame["text"]})
            await self.send({"type": "ack", "id": frame["id"]})
            task = asyncio.create_task(self.answer(frame["id"]))
            self.replies.add(task)
            task.add_done_callback(self.replies.discard)

    async def answer(self, question_id):
        chunks = []
        try:
            async for chunk in self.consultant.reply(list(self.history)):
                chunks.append(chunk)
            text = "".join(chunks)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("consultant failed consultant=%s", self.consultant.name)
            text = "Sorry, I couldn't answer that just now. Please try again in a moment."
        self.history.append({"author": "consultant", "text": text})
        await self.send({"type": "reply", "id": f"r{next(_reply_ids)}", "in_reply_to": question_id, "text": text})
