"""The HTTP fallback ``/poll``: the chat protocol carried by long-polling when WebSockets fail.

Some proxies refuse the upgrade, withhold the server's frames or cut a socket soon after it opens.
The widget then sends the very same frames over plain HTTP (docs/protocol.md, "HTTP fallback"):
``POST /poll`` opens a channel, ``GET /poll/<id>?from=n`` collects frames, ``POST /poll/<id>``
sends one, ``POST /poll/<id>/close`` ends it. Each channel runs the socket's own ``ChatConnection``
on a ``PollSocket`` (server/transport/channels.py) in a task of its own, admitted and counted by
the hub exactly like a socket.

CORS is done here, not by quart-cors: a channel answers only the origin that opened it, admitted
by the same rules as the socket's handshake.
"""

import asyncio
import contextvars
import functools
import json
import re

from quart import Blueprint, Response, current_app, request
from quart_cors import cors_exempt

from . import socket
from .limits import address_key

bp = Blueprint("polling", __name__)

RETRY_AFTER = 1          # seconds, with the 429 of a full inbound queue
PREFLIGHT_MAX_AGE = 600  # seconds a browser may reuse a preflight's answer
_FRAME_NUMBER = re.compile(r"[0-9]{1,15}")


def _answer(body, status=200, allow_origin=None, headers=None):
    """Every answer of these routes: JSON (or empty), never cached, CORS only for ``allow_origin``."""
    if body is None:
        response = Response("", status=status, content_type="text/plain")
    else:
        text = body if isinstance(body, str) else json.dumps(body)
        response = Response(text, status=status, content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "Origin"
    if allow_origin:
        response.headers["Access-Control-Allow-Origin"] = allow_origin
    response.headers.update(headers or {})
    return response


def _error(status, code, message, allow_origin=None, headers=None):
    return _answer({"error": code, "message": message}, status, allow_origin, headers)


def _allowed_origin():
    """The request's Origin when the origin rules admit it (for Access-Control-Allow-Origin), else None."""
    return current_app.extensions["chat_origins"].cors_origin(
        request.headers.get("Origin"), request.headers.get("Host"), request.scheme)


def _refuse(status, code, message, why, allow_origin=None, *, reason):
    socket.refused(current_app._get_current_object(), "poll open", status, request.headers.get("Origin"), why,
                   reason=reason)
    return _error(status, code, message, allow_origin)


def _closed_at_once(code_reason, why, allow_origin, *, reason):
    """What the socket says by accepting only to close: here the close itself, and no channel."""
    socket.refused(current_app._get_current_object(), "poll open", code_reason[0], request.headers.get("Origin"),
                   why, reason=reason)
    return _answer({"close": _close(*code_reason)}, 200, allow_origin)


def _close(code, reason):
    return {"code": code, "reason": reason}


@bp.before_request
async def fallback_enabled():
    if current_app.extensions["chat_config"].http_fallback == "off":
        return _error(404, "fallback_disabled", "The HTTP fallback is turned off on this chat server "
                      "(setting http_fallback)", _allowed_origin())
    return None


@bp.route("/poll", methods=["POST"], provide_automatic_options=False)
@cors_exempt
async def open_channel():
    """Admit as the socket's handshake does (same order, same limits), then open a channel.

    Where the socket accepts only to close (server full: 1013, another protocol version: 4001), the
    answer is that close, with no channel: nothing is kept for a refused widget.
    """
    hub = current_app.extensions["chat_hub"]
    origin = request.headers.get("Origin")
    allowed, why = current_app.extensions["chat_origins"].check(origin, request.headers.get("Host"), request.scheme)
    if not allowed:
        return _refuse(403, "origin_not_allowed", "This site's origin is not allowed to use this chat server", why,
                       reason="origin")
    cors = _allowed_origin()
    if hub.draining:
        return _refuse(503, "draining", "The chat server is restarting; try again shortly", "draining for shutdown",
                       cors, reason="draining")
    if hub.full:
        return _closed_at_once(socket.FULL, f"connection limit {hub.max_connections} reached", cors, reason="full")
    if hub.store_trouble is not None:
        return _closed_at_once(socket.STORE_DOWN, hub.store_trouble, cors, reason="unavailable")
    address = address_key(request.remote_addr)
    socket.note_forwarded(request.headers, current_app.extensions["chat_config"])
    if hub.addresses.full(address):
        return _refuse(429, "too_many_connections", "Too many chat connections are open from your address",
                       f"{hub.addresses.max_per_address} connections from {address} already open", cors,
                       reason="address")
    if (version := socket.other_version(request.args)) is not None:
        return _closed_at_once(socket.UNSUPPORTED, f"unsupported protocol version v={version!r}", cors,
                               reason="version")
    channels = current_app.extensions["chat_channels"]
    channel = channels.create(origin or "")
    _start(channel, hub, address)
    return _answer({"channel": channel.id, "poll_timeout": channels.poll_timeout}, 200, cors)


def _start(channel, hub, address):
    """Run the channel's connection in a task of its own, holding one of the address's slots until the
    task is done, however it ends (cancelled before its first step included)."""
    hub.addresses.acquire(address)
    # A fresh context: the task outlives this request and must not keep the request's context alive.
    channel.task = asyncio.create_task(
        socket.serve(current_app._get_current_object(), channel.socket, channel.origin, "poll", address),
        context=contextvars.Context())
    channel.task.add_done_callback(lambda _: hub.addresses.release(address))


def _on_channel(view):
    """For every route after the opening: find the channel and check the Origin, then ``view(channel, origin)``.

    A channel another instance owns is answered by it, through ``chat_forwarding`` when instances share
    a store (server/transport/forwarding.py). An unknown channel gets 404 (readable by allowed origins,
    so the widget opens a new one); a request from another origin than the one that opened the channel
    gets 403 without CORS headers.
    """
    @functools.wraps(view)
    async def on_channel(channel_id):
        channels = current_app.extensions["chat_channels"]
        channel = channels.get(channel_id)
        if channel is None:
            forwarding = current_app.extensions.get("chat_forwarding")
            owner = channels.owner(channel_id)
            answer = await forwarding.forward(owner) if forwarding is not None and owner is not None else None
            if answer is not None:
                return answer
            return _error(404, "unknown_channel", "This chat channel is unknown or has expired; open a new one",
                          _allowed_origin())
        origin = request.headers.get("Origin")
        if origin is not None and origin != channel.origin:
            return _error(403, "origin_mismatch", "This channel was opened by another origin")
        return await view(channel, origin)

    return on_channel


@bp.route("/poll/<channel_id>", methods=["GET"], provide_automatic_options=False)
@cors_exempt
@_on_channel
async def poll(channel, origin):
    """Frames from ``from`` on, held up to poll_timeout s while there are none; the close at the end."""
    text = request.args.get("from", "")
    if not _FRAME_NUMBER.fullmatch(text):
        return _error(400, "invalid_from", "from must be the number of the next frame the widget needs", origin)
    start = int(text)
    try:
        sent, closed = await channel.poll(start, current_app.extensions["chat_channels"].poll_timeout)
    except ValueError as error:
        return _error(400, "invalid_from", str(error), origin)
    # The frames are already JSON text (what a socket would have sent): joined, not decoded again.
    body = f'{{"from":{start},"frames":[{",".join(sent)}]'
    if closed is not None:
        body += ',"close":' + json.dumps(_close(*closed))
    return _answer(body + "}", 200, origin)


@bp.route("/poll/<channel_id>", methods=["POST"], provide_automatic_options=False)
@cors_exempt
@_on_channel
async def post_frame(channel, origin):
    """One frame, as text: queued for the connection, which takes it exactly as it takes a socket's."""
    limit = current_app.extensions["chat_config"].max_message_bytes
    data = await _read_body(limit)
    if channel.socket.closed:
        return _error(410, "channel_closed", "The server closed this channel; poll to read why", origin)
    if data is None:
        await channel.close(*socket.too_big(limit))  # as ChatConnection closes a socket
        return _error(413, "frame_too_large", f"The frame is larger than {limit} bytes", origin)
    try:
        frame = data.decode("utf-8")
    except UnicodeDecodeError:
        return _error(400, "invalid_utf8", "the frame must be UTF-8 text", origin)
    if not channel.socket.post(frame):
        return _error(429, "queue_full", "Too many frames are waiting on this channel; send again shortly",
                      origin, {"Retry-After": str(RETRY_AFTER), "Access-Control-Expose-Headers": "Retry-After"})
    return _answer(None, 204, origin)


async def _read_body(limit):
    """The request body, or None when it is longer than ``limit`` bytes (read no further)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    data = bytearray()
    async for chunk in request.body:
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)


@bp.route("/poll/<channel_id>/close", methods=["POST"], provide_automatic_options=False)
@cors_exempt
@_on_channel
async def close_channel(channel, origin):
    """The widget is done: the connection leaves as a socket that closed does."""
    channel.end()
    return _answer(None, 204, origin)


# Quart's automatic OPTIONS answers are turned off on the other routes so these answer preflights.
@bp.route("/poll", methods=["OPTIONS"])
@bp.route("/poll/<channel_id>", methods=["OPTIONS"])
@bp.route("/poll/<channel_id>/close", methods=["OPTIONS"])
@cors_exempt
async def preflight(channel_id=None):
    """The widget avoids preflights (text/plain bodies), but answers one sensibly if a browser sends it."""
    origin = _allowed_origin()
    if origin is None:
        return _error(403, "origin_not_allowed", "This site's origin is not allowed to use this chat server")
    return _answer(None, 204, origin, {"Access-Control-Allow-Methods": "GET, POST",
                                       "Access-Control-Allow-Headers": "Content-Type",
                                       "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE)})
