"""The chat WebSocket endpoint ``/ws``: origin and capacity checks before the upgrade, then the protocol.

``chat_socket`` admits or refuses the handshake; ``ChatConnection`` speaks the protocol on one open
socket (``hello`` first, then messages and pings) on behalf of the conversation service.
"""

import asyncio
import logging
import math
import time

from quart import Blueprint, Response

from protocol import close, frames
from protocol.checks import FrameError

from ..conversations.service import NewConversationRefused
from ..conversations.store import ConversationFull, StoreUnavailable, size_of
from ..metrics import NO_METRICS
from . import headers, wire
from .asgi_socket import PATH, Disconnected
from .channels import ChannelClosed
from .limits import CLOSE, OK, RateLimiter, address_key
from .reports import FailureReports

log = logging.getLogger("chat_widget.socket")
bp = Blueprint("socket", __name__)  # the socket's one HTTP answer; the socket itself is asgi_socket's


YIELD_EVERY = 16  # frames handled back to back before a connection lets the others run
FULL = (close.TRY_LATER, "server is full; try again later")
STORE_DOWN = (close.UNAVAILABLE, "the chat service cannot reach its conversation store; try again shortly")
UNSUPPORTED = (close.UNSUPPORTED_VERSION, f"unsupported protocol version; server speaks v{frames.VERSION}")


def too_big(limit):
    """The close for a frame over ``limit`` bytes, on a socket or a channel."""
    return close.TOO_BIG, f"frame larger than {limit} bytes"


def refused(app, what, status, origin, why, *, reason):
    """Log and count one refused handshake or channel opening (``what``): the one place for both.
    ``reason`` is its metrics label, one of ``metrics.REFUSAL_REASONS``."""
    log.warning("%s rejected status=%s origin=%r reason=%s", what, status, origin, why)
    app.extensions["chat_hub"].rejected_total += 1
    app.extensions["chat_metrics"].handshake_refused(reason)


_forwarded_seen = False


def note_forwarded(headers, config):
    """Say once per process that a proxy's X-Forwarded-For is being ignored because no proxy is trusted:
    every visitor behind it then counts as the proxy's one address (docs/deploy.md). ``headers``: any
    mapping that finds lower-case names."""
    global _forwarded_seen
    if _forwarded_seen or config.trusted_proxies or "x-forwarded-for" not in headers:
        return
    _forwarded_seen = True
    log.warning("X-Forwarded-For ignored: no --trusted-proxy is set, so every visitor behind that proxy counts "
                "as its one address for the per-address limits; name the proxy with --trusted-proxy "
                "(CHAT_WIDGET_TRUSTED_PROXIES)")


def other_version(args):
    """The protocol version a request asks for (``v``; 1 when absent) when it is not ours, else None."""
    version = args.get("v", str(frames.VERSION))
    return None if version == str(frames.VERSION) else version[:20]


@bp.get(PATH)
async def plain_get():
    """A GET of the socket's URL without the upgrade: usually a proxy in front that does not pass the
    ``Upgrade`` header on (docs/deploy.md). 426 says which, to a person and to ``doctor``."""
    return Response("Upgrade required: the chat's WebSocket endpoint got a plain GET\n"
                    "A proxy in front of the server that does not forward the Upgrade header turns a handshake "
                    "into a plain GET (docs/deploy.md).\n", status=426, content_type="text/plain",
                    headers={"Upgrade": "websocket"})


async def chat_socket(app, handshake, socket):
    """``/ws`` (asgi_socket.install): a ``handshake`` (asgi_socket.Handshake) admitted or refused, then
    the protocol on ``socket`` (asgi_socket.AsgiSocket).

    Refusals in this order: origin 403 (before anything else counts, as /ws-check says), headers 431,
    draining 503, server full 1013, store unreachable 4203, this address 429, another protocol version
    4001.
    """
    hub = app.extensions["chat_hub"]
    origin = handshake.headers.get("origin")
    allowed, why = app.extensions["chat_origins"].check(origin, handshake.headers.get("host"), handshake.scheme)
    if not allowed:
        return await _refuse(app, socket, origin, 403, "Origin not allowed\n", why, reason="origin")
    sent = handshake.raw_headers
    if headers.too_large(sent):
        return await _refuse(app, socket, origin, 431, headers.refusal_text(sent),
                             f"request headers too large: {headers.header_bytes(sent)} bytes in {len(sent)} headers",
                             reason="headers")
    if hub.draining:
        return await _refuse(app, socket, origin, 503, "Server is restarting\n", "draining for shutdown",
                             reason="draining")
    if hub.full:
        return await _accept_to_close(app, socket, origin, FULL, f"connection limit {hub.max_connections} reached",
                                      reason="full")
    if hub.store_trouble is not None:
        return await _accept_to_close(app, socket, origin, STORE_DOWN, hub.store_trouble, reason="unavailable")
    address = address_key(handshake.client_host)
    note_forwarded(handshake.headers, app.extensions["chat_config"])
    if hub.addresses.full(address):
        return await _refuse(app, socket, origin, 429, "Too many connections from your address\n",
                             f"{hub.addresses.max_per_address} connections from {address} already open",
                             reason="address")
    if (version := other_version(handshake.args)) is not None:
        return await _accept_to_close(app, socket, origin, UNSUPPORTED, f"unsupported protocol version v={version!r}",
                                      reason="version")
    del handshake  # its copy of the headers (about 2 KiB) is not kept for the socket's life
    hub.addresses.acquire(address)
    try:
        await socket.accept()
        await serve(app, socket, origin or "", "websocket", address)
    finally:
        hub.addresses.release(address)


async def _refuse(app, socket, origin, status, text, why, *, reason):
    refused(app, "handshake", status, origin, why, reason=reason)
    await socket.refuse(status, text)


async def _accept_to_close(app, socket, origin, code_reason, why, *, reason):
    """Accepted only to be closed with a code a browser can read: a refused handshake reaches script
    as 1006, indistinguishable from a dead server."""
    refused(app, "handshake", code_reason[0], origin, why, reason=reason)
    await socket.accept()
    await socket.close(*code_reason)


async def serve(app, socket, origin, transport, address):
    """One admitted connection from ``address`` (``limits.address_key``), from start to end, on a
    WebSocket or an HTTP channel (``transport``): counted by the hub while it runs, closed with 1008
    or 1011 when it breaks a limit or fails.

    ``socket``: an ``asgi_socket.AsgiSocket`` or a channel's ``channels.PollSocket``; nothing here reads a
    request context (a channel's connection runs in a task of its own, outside any request).
    """
    hub = app.extensions["chat_hub"]
    metrics = app.extensions["chat_metrics"]
    connection_id = hub.register()
    metrics.connection_opened(transport)
    log.info("connection opened id=%s transport=%s origin=%s open=%d", connection_id, transport, origin,
             len(hub.open))
    connection = app.extensions["chat_connection_class"](socket, app.extensions["chat_config"],
                                                         app.extensions["chat_conversations"], origin,
                                                         reports=hub.failure_reports, address=address, metrics=metrics)
    if transport == "websocket":  # a channel gets no beats: each would cost a poll answer
        connection.beats = app.extensions.get("chat_beats")
    try:
        await connection.run()
    except (Disconnected, ChannelClosed):
        pass  # the client went away, or a channel ended (closed by the widget, expired, or full)
    except PolicyViolation as violation:
        await socket.close(close.POLICY, str(violation))
    except StoreUnavailable as error:
        log.warning("store unavailable id=%s: %s", connection_id, error)
        if connection.session_id is None:  # turned away at its hello; a drop later on is no refusal
            metrics.handshake_refused("unavailable")
        await socket.close(*STORE_DOWN)
    except NewConversationRefused as refusal:
        log.info("new conversation refused id=%s address=%s code=%d reason=%s", connection_id, address,
                 refusal.code, refusal.reason)
        metrics.handshake_refused("busy" if refusal.code == close.BUSY else "limited")
        await socket.close(refusal.code, refusal.reason)
    except Exception:
        log.exception("connection failed id=%s", connection_id)
        await socket.close(close.INTERNAL, "internal error")
    finally:
        connection.leave()
        duration = hub.unregister(connection_id)
        metrics.connection_closed(transport)
        log.info("connection closed id=%s transport=%s duration=%.1fs", connection_id, transport, duration)


class PolicyViolation(Exception):
    """The client broke a limit after warnings: close with 1008."""


class ChatConnection:
    """One socket: waits for ``hello``, joins (or resumes) the session, then relays frames."""

    idle_timeout = None  # seconds without a frame before closing with 1001; None: the setting
    beats = None  # the server's heartbeat.BeatSlots when it beats this connection (a WebSocket), else None

    def __init__(self, socket, config, conversations, origin, reports=None, address=None, metrics=None):
        # Replies are sent on it from the session's tasks, not only from this connection's.
        self.socket = socket
        self.config = config
        self.conversations = conversations
        self.origin = origin
        self.address = address  # the client's (limits.address_key): its budgets are shared by its connections
        self.session_id = None
        self.lang = None  # the widget's language (hello), for the consultant
        # The hub's counts (a private one when not given: the report is still logged).
        self.reports = reports if reports is not None else FailureReports()
        self.reported = False
        self.metrics = metrics if metrics is not None else NO_METRICS  # the app's (/metrics)
        self._held = None  # frames from the bus held while hello sends the replay
        self._send_lock = asyncio.Lock()
        self.limiter = RateLimiter(config.message_rate, config.message_period, config.message_burst)
        if self.idle_timeout is None:
            self.idle_timeout = config.idle_timeout

    async def send(self, frame):
        await self.send_encoded(wire.encode(frame))

    async def send_encoded(self, text):
        """Send a frame already encoded (``wire``), in turn with the session's tasks sending replies."""
        async with self._send_lock:
            await self.socket.send(text)

    async def run(self):
        # One idle deadline per connection, pushed back on every frame (a wait_for per receive cost
        # about half the server's ping throughput: docs/performance.md).
        loop = asyncio.get_running_loop()
        deadline = None
        handled = 0
        try:
            async with asyncio.timeout(self.idle_timeout) as deadline:
                while True:
                    data = await self.socket.receive()
                    deadline.reschedule(loop.time() + self.idle_timeout)
                    if not await self.take(data):
                        return
                    handled += 1
                    if handled % YIELD_EVERY == 0:
                        # Frames already queued are received and answered without yielding (neither
                        # the server's queue nor its send waits while it can go on): a burst of thousands
                        # of pings in one read would otherwise hold every other socket, reply and beat
                        # for a few hundred ms.
                        await asyncio.sleep(0)
        except TimeoutError:
            if not deadline.expired():
                raise
            log.info("closing idle connection after %ss", self.idle_timeout)
            await self.socket.close(close.GOING_AWAY, "idle timeout")
        finally:
            # The deadline knows this task, and a cancelled task keeps its CancelledError, whose traceback
            # keeps this frame: a cycle of about 110 objects per closed socket (the protocol, its buffers,
            # the socket) that only a full collection frees, and none once frozen
            # (server/gcpolicy.py). Forgetting the deadline lets reference counting free them at once.
            deadline = None

    async def take(self, data):
        """Handle one frame; False when the connection was closed."""
        size = len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))
        if size > self.config.max_message_bytes:
            await self.socket.close(*too_big(self.config.max_message_bytes))
            return False
        try:
            frame = wire.decode_client_frame(data, self.config.max_message_bytes)
            await self.handle(frame)
        except FrameError as error:
            await self.send(frames.error(error.code, str(error), error.frame_id))
        return True

    async def handle(self, frame):
        kind = frame["type"]
        if kind == "ping":
            await self.send_encoded(wire.encode_pong(frame.get("t")))
        elif kind == "hello":
            await self.hello(frame)
        elif self.session_id is None:
            raise FrameError("hello_required", "send a hello frame first", frame.get("id"))
        elif kind == "message":
            received = time.monotonic()
            self.metrics.message_received()
            if not await self._within_rate(frame):
                return
            try:
                entry = await self.conversations.visitor_message(self.session_id, frame["id"], frame["text"],
                                                                 self.lang, self.address)
            except ConversationFull:
                raise FrameError("conversation_full", "this conversation is full; start a new one to go on",
                                 frame["id"]) from None
            await self.acknowledge(entry)
            self.metrics.round_trip(time.monotonic() - received)
        elif kind == "report":
            self.report(frame)

    def report(self, frame):
        """What failed before this connection got through: logged and counted, once per connection."""
        if self.reported:
            raise FrameError("report_limit", "a report was already received on this connection")
        self.reported = True
        for failure_class in self.reports.record(frame, self.origin, self.session_id):
            self.metrics.failure_report(failure_class)

    async def acknowledge(self, entry):
        """The message is stored: tell the widget (its outbox lets go of it)."""
        await self.send(frames.ack(entry.id, entry.seq))

    async def hello(self, frame):
        if self.session_id is not None:
            raise FrameError("already_joined", "hello was already sent on this connection")
        asked = frame.get("last_seq", 0)
        session_id, resumed, expired = await self.conversations.open_session(
            frame.get("session"), asked, self.origin, self.address)
        self.session_id = session_id
        self.metrics.session_joined(resumed, expired)
        self.lang = frame.get("lang")
        # Watch first, then read the replay: a reply stored in between is held and sent after the
        # replay, unless the replay carried it.
        self._held = []
        early = await self.conversations.watch(session_id, self.deliver)
        replay = await self.conversations.store.entries_after(session_id, asked) if resumed else []
        last_seq = replay[-1].seq if replay else (asked if resumed else 0)
        config = self.config
        limits = frames.limits(config.message_rate, config.message_period, config.message_burst,
                               config.max_message_bytes)
        heartbeat = None if self.beats is None else frames.heartbeat(self.beats.interval, self.idle_timeout)
        await self.send(frames.welcome(session_id, resumed, expired, last_seq, config.contact, limits, heartbeat))
        if self.beats is not None:  # beaten from its welcome on, until it leaves
            self.beats.add(self, self.socket.send)
        for entry in replay:
            await self.send(entry.frame(live=False))
        replayed = {entry.id for entry in replay}
        self._held[:0] = early  # the replies streaming when it started watching, then what came since
        while self._held:
            held = self._held.pop(0)
            stale = isinstance(held.get("seq"), int) and held["seq"] <= last_seq
            if not stale and held.get("id") not in replayed:
                await self.send(held)
        self._held = None
        if resumed:
            await self.conversations.answer_unanswered(session_id, self.lang, self.address)

    async def deliver(self, frame):
        """A frame of this connection's session, from the bus: held while ``hello`` sends the replay."""
        if self._held is not None:
            self._held.append(frame)
        else:
            await self.send(frame)

    async def _within_rate(self, frame):
        """Refuse a message over the connection's rate, its session's or its address's budget with an
        error frame; close 1008 if the client keeps going without waiting as told."""
        now = time.monotonic()
        budgets = self.conversations.budgets
        size = size_of(frame["text"])
        shared_wait = budgets.message_wait(self.address, size, now) if budgets is not None else 0.0
        verdict = self.limiter.check(now, shared_wait)
        if verdict == OK:
            # The session's own bucket, in the store: reconnecting (to any instance) does not refill it.
            config = self.config
            session_wait = await self.conversations.store.rate_wait(self.session_id, config.message_rate,
                                                                    config.message_period, config.message_burst)
            if session_wait <= 0:
                if budgets is not None:
                    budgets.spend_message(self.address, size, now)
                return True
            verdict = self.limiter.refuse(now, session_wait)
        if verdict == CLOSE:
            log.warning("rate limit: closing connection after repeated warnings")
            raise PolicyViolation("message rate limit exceeded")
        wait = math.ceil(self.limiter.retry_after(now) * 100) / 100  # up: a client that waits this long is in time
        await self.send(frames.error("rate_limited", f"too many messages; send again in {wait} s", frame["id"], wait))
        return False

    def leave(self):
        if self.beats is not None:
            self.beats.discard(self)
        if self.session_id is not None:
            self.conversations.unwatch(self.session_id, self.deliver)
