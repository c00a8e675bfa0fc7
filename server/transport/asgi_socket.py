"""``/ws`` served as a plain ASGI endpoint in front of Quart: ``install(app, handler)``.

Why not a Quart websocket route: for every socket Quart runs a second task (its receiver) with a queue
between it and the handler, and keeps its ASGI connection, a websocket context and a Werkzeug copy of
the handshake's headers for the socket's whole life. At 10,000 held sockets that was about a third of
the memory per socket and of the objects the collector walks (docs/performance.md), and each frame
passed through one task switch more than it needs. Here the handler runs in the ASGI server's own task
for the socket and receives from the server's own queue; what the admission checks read from the
handshake (``Handshake``) is dropped once the socket is admitted.

Every other request (the HTTP routes, the lifespan, any other path) goes to Quart unchanged, the test
client's included: it calls ``app.asgi_app`` too.
"""

from urllib.parse import parse_qsl

PATH = "/ws"
RESPONSE_EXTENSION = "websocket.http.response"  # ASGI: the server can answer a handshake with an HTTP response


class Disconnected(Exception):
    """The client closed the socket or went away (ASGI ``websocket.disconnect``)."""


class Handshake:
    """The upgrade request as the admission checks read it: ``headers`` by lower-case name (the first
    of each), ``args`` (the query, first of each), ``scheme``, ``client_host`` and the raw header list."""

    __slots__ = ("headers", "args", "scheme", "client_host", "raw_headers")

    def __init__(self, scope):
        self.raw_headers = scope["headers"]
        self.headers = {}
        for name, value in self.raw_headers:
            self.headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        self.args = {}
        for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
            self.args.setdefault(name, value)
        self.scheme = scope.get("scheme", "ws")
        self.client_host = (scope.get("client") or (None,))[0]


class AsgiSocket:
    """The socket as ``ChatConnection`` uses it (``receive``, ``send``, ``close``), straight onto the
    ASGI server's callables; ``accept`` or ``refuse`` first."""

    __slots__ = ("_receive", "_send", "can_respond", "closed")

    def __init__(self, receive, send, can_respond=True):
        self._receive = receive
        self._send = send
        self.can_respond = can_respond  # the server can answer the handshake with a status (RESPONSE_EXTENSION)
        self.closed = False

    async def accept(self):
        await self._send({"type": "websocket.accept"})

    async def refuse(self, status, text):
        """Answer the handshake with an HTTP ``status`` and a plain-text body instead of upgrading. A
        server without the response extension can only refuse with its own status (Uvicorn's: 403)."""
        self.closed = True
        if not self.can_respond:
            await self._send({"type": "websocket.close", "code": 1000})
            return
        await self._send({"type": "websocket.http.response.start", "status": status,
                          "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
        await self._send({"type": "websocket.http.response.body", "body": text.encode("utf-8")})

    async def receive(self):
        """The next frame's text (or bytes); ``Disconnected`` once the client is gone."""
        while True:
            event = await self._receive()
            kind = event["type"]
            if kind == "websocket.receive":
                text = event.get("text")
                return text if text is not None else event.get("bytes", b"")
            if kind == "websocket.disconnect":
                raise Disconnected(event.get("code", 1005))
            # websocket.connect: the upgrade request, already read from the scope

    async def send(self, data):
        if isinstance(data, str):
            await self._send({"type": "websocket.send", "text": data})
        else:
            await self._send({"type": "websocket.send", "bytes": data})

    async def close(self, code, reason=""):
        """Close with ``code`` and ``reason``; once (a second close is no frame at all)."""
        if self.closed:
            return
        self.closed = True
        await self._send({"type": "websocket.close", "code": code, "reason": reason})


def install(app, handler):
    """Route WebSocket requests for ``PATH`` to ``await handler(app, Handshake, AsgiSocket)``, and
    everything else to Quart."""
    quart_asgi = app.asgi_app

    async def asgi_app(scope, receive, send):
        if scope["type"] != "websocket" or _path(scope) != PATH:
            return await quart_asgi(scope, receive, send)
        socket = AsgiSocket(receive, send, RESPONSE_EXTENSION in (scope.get("extensions") or {}))
        await handler(app, Handshake(scope), socket)

    app.asgi_app = asgi_app
    app.extensions["chat_socket_path"] = PATH  # what /healthz checks


def _path(scope):
    """The path below the app's mount point (``root_path``), as Quart routes it."""
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path
