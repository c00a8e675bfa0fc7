"""The chat WebSocket endpoint ``/ws``: origin check before upgrade, then the v1 protocol."""

import asyncio
import logging
import time

from quart import Blueprint, Response, current_app, websocket
from quart_cors import cors_exempt

from . import protocol
from .limits import CLOSE, OK, RateLimiter, address_key

log = logging.getLogger("chat_widget.socket")
bp = Blueprint("socket", __name__)


def _refuse(status, reason, why):
    log.warning("handshake rejected status=%s origin=%r reason=%s", status, websocket.headers.get("Origin"), why)
    current_app.extensions["chat_hub"].rejected_total += 1
    return Response(reason, status=status, content_type="text/plain")


@bp.websocket("/ws")
@cors_exempt
async def chat_socket():
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
    address = address_key((websocket.scope.get("client") or (None,))[0])
    if not hub.addresses.acquire(address):
        return _refuse(429, "Too many connections from your address\n",
                       f"{hub.addresses.max_per_address} connections from {address} already open")
    try:
        await _serve(hub)
    finally:
        hub.addresses.release(address)


async def _serve(hub):
    await websocket.accept()
    version = websocket.args.get("v", str(protocol.VERSION))
    if version != str(protocol.VERSION):
        log.warning("handshake rejected reason=unsupported protocol version v=%r", version[:20])
        await websocket.close(protocol.CLOSE_UNSUPPORTED_VERSION, f"unsupported protocol version; server speaks v{protocol.VERSION}")
        return

    connection_id = hub.register()
    log.info("connection opened id=%s origin=%s open=%d", connection_id, websocket.headers.get("Origin"), len(hub.open))
    connection = ChatConnection(websocket._get_current_object(), current_app.extensions["chat_config"],
                                current_app.extensions["chat_conversations"], websocket.headers.get("Origin") or "")
    try:
        await connection.run()
    except ConnectionDropped:
        await websocket.close(protocol.CLOSE_INTERNAL, "fault injected")
    except PolicyViolation as violation:
        await websocket.close(protocol.CLOSE_POLICY, str(violation))
    except Exception:
        log.exception("connection failed id=%s", connection_id)
        await websocket.close(protocol.CLOSE_INTERNAL, "internal error")
    finally:
        connection.leave()
        duration = hub.unregister(connection_id)
        log.info("connection closed id=%s duration=%.1fs", connection_id, duration)


class PolicyViolation(Exception):
    """The client broke a limit after warnings: close with 1008."""


class ConnectionDropped(Exception):
    """Fault injection: end the socket abruptly after the message was stored."""


class ChatConnection:
    """One socket: waits for ``hello``, joins (or resumes) the session, then relays frames."""

    def __init__(self, socket, config, conversations, origin):
        # The socket object itself, not Quart's context-local `websocket`: replies are sent from the
        # session's tasks, whose context is that of whichever connection started them.
        self.socket = socket
        self.config = config
        self.conversations = conversations
        self.origin = origin
        self.session_id = None
        self._send_lock = asyncio.Lock()
        self.limiter = RateLimiter(config.message_rate, config.message_period, config.message_burst)

    async def send(self, frame):
        async with self._send_lock:
            await self.socket.send(protocol.encode(frame))

    async def run(self):
        # One idle deadline per connection, pushed back on every frame (a wait_for per receive cost
        # about half the server's ping throughput: docs/performance.md).
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.config.idle_timeout) as deadline:
                while True:
                    data = await self.socket.receive()
                    deadline.reschedule(loop.time() + self.config.idle_timeout)
                    if not await self.take(data):
                        return
        except TimeoutError:
            if not deadline.expired():
                raise
            log.info("closing idle connection after %ss", self.config.idle_timeout)
            await self.socket.close(protocol.CLOSE_GOING_AWAY, "idle timeout")

    async def take(self, data):
        """Handle one frame; False when the connection was closed."""
        size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
        if size > self.config.max_message_bytes:
            await self.socket.close(protocol.CLOSE_TOO_BIG, f"frame larger than {self.config.max_message_bytes} bytes")
            return False
        try:
            frame = protocol.parse_client_frame(data, self.config.max_message_bytes)
            await self.handle(frame)
        except protocol.FrameError as error:
            await self.send(protocol.error(error.code, str(error), error.frame_id))
        return True

    async def handle(self, frame):
        kind = frame["type"]
        if kind == "ping":
            await self.send({"type": "pong", "t": frame["t"]} if "t" in frame else {"type": "pong"})
        elif kind == "hello":
            await self.hello(frame)
        elif self.session_id is None:
            raise protocol.FrameError("hello_required", "send a hello frame first", frame.get("id"))
        elif kind == "message":
            if not await self._within_rate(frame):
                return
            entry = await self.conversations.visitor_message(self.session_id, frame["id"], frame["text"])
            if self._inject_ack_fault():
                return
            await self.send({"type": "ack", "id": entry.id, "seq": entry.seq})

    async def hello(self, frame):
        if self.session_id is not None:
            raise protocol.FrameError("already_joined", "hello was already sent on this connection")
        session_id, resumed, expired, replay = await self.conversations.open_session(
            frame.get("session"), frame.get("last_seq", 0), self.origin)
        self.session_id = session_id
        if replay:
            last_seq = replay[-1].seq
        else:
            last_seq = frame.get("last_seq", 0) if resumed else 0
        welcome = protocol.welcome(self.config.contact, session_id, resumed, expired, last_seq)
        # Well-behaved widgets pace their outbox to this, so only abusers meet the limit.
        welcome["limits"] = {"messages": self.config.message_rate, "per": self.config.message_period,
                             "burst": self.config.message_burst, "max_message_bytes": self.config.max_message_bytes}
        await self.send(welcome)
        for entry in replay:
            await self.send(entry.frame(live=False))
        for partial in self.conversations.watch(session_id, self.send):
            await self.send(partial)
        if resumed:
            await self.conversations.answer_unanswered(session_id)

    async def _within_rate(self, frame):
        """Refuse a message over the rate with an error frame; close 1008 if the client keeps going."""
        now = time.monotonic()
        verdict = self.limiter.check(now)
        if verdict == OK:
            return True
        if verdict == CLOSE:
            log.warning("rate limit: closing connection after repeated warnings")
            raise PolicyViolation("message rate limit exceeded")
        wait = round(self.limiter.retry_after(now), 2)
        error = protocol.error("rate_limited", f"too many messages; send again in {wait} s", frame["id"])
        error["retry_after"] = wait
        await self.send(error)
        return False

    def _inject_ack_fault(self):
        """Test-only faults (``faults`` setting): lose the first acknowledgement after storing."""
        faults = self.config.faults
        for name in ("drop_ack_once", "stall_ack_once"):
            if faults.get(name) is True:
                faults[name] = "fired"
                log.warning("fault injected fault=%s", name)
                if name == "drop_ack_once":
                    raise ConnectionDropped()
                return True
        return False

    def leave(self):
        if self.session_id is not None:
            self.conversations.unwatch(self.session_id, self.send)
