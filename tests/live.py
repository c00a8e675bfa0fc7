"""The real server in a subprocess, spoken to over real sockets: a WebSocket client as a browser's,
raw HTTP requests whose every header byte the test chooses, and the server's log lines."""

import asyncio
import json
import socket
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))
from server_process import ServerProcess  # noqa: E402

ALLOWED = "https://shop.example.com"
TIMEOUT = 5.0


def start(*args, env=None):
    """``chat-widget serve --allow-origin https://shop.example.com`` with conversations in memory."""
    return ServerProcess("--allow-origin", ALLOWED, *args, env={"CHAT_WIDGET_STORE": "memory", **(env or {})}).start()


def ws_url(server, path="/ws?v=1"):
    return server.url.replace("http://", "ws://", 1) + path


def opened(server, path="/ws?v=1", origin=ALLOWED, headers=None, address=None):
    """A socket to the server; from the loopback source ``address`` (``127.0.0.5``: any of 127/8),
    which the server takes for the visitor's address, when given."""
    options = {"local_addr": (address, 0)} if address else {}
    return connect(ws_url(server, path), origin=origin, additional_headers=headers, open_timeout=2,
                   compression=None, max_size=None, ping_interval=None, **options)


async def receive(ws, beats=False):
    """The next frame; the server's heartbeat beats (every 5 s, or sooner when the machine is slow) are
    skipped unless ``beats``, as the widget ignores them."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            frame = json.loads(await ws.recv())
            if beats or frame.get("type") != "beat":
                return frame


async def join(ws):
    """hello -> welcome: the start of every conversation."""
    await ws.send(json.dumps({"type": "hello"}))
    welcome = await receive(ws)
    assert welcome["type"] == "welcome", welcome
    return welcome


class Answer:
    """An HTTP answer read off a raw socket: status, headers (lowercase names), body."""

    def __init__(self, raw):
        head, _, self.body = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1]) if lines[0].startswith("HTTP/") else None
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def json(self):
        return json.loads(self.body)


def request(server, path, headers, piece=None, websocket=False):
    """Send ``GET path`` with exactly ``headers`` (plus the handshake's own when ``websocket``), whole
    or in ``piece``-byte writes, and read the answer until the server closes or ``TIMEOUT`` passes:
    an answer that never comes is ``Answer(b"")`` (status None)."""
    if websocket:
        headers = [*headers, ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]
    else:
        headers = [*headers, ("Connection", "close")]
    data = (f"GET {path} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n").encode("latin-1")
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as connection:
        try:
            for start_at in range(0, len(data), piece or len(data)):
                connection.sendall(data[start_at:start_at + (piece or len(data))])
                if piece:
                    time.sleep(0.002)
        except OSError:  # the server answered and closed before the whole head was sent
            pass
        try:
            while chunk := connection.recv(65536):
                received += chunk
                if websocket and b"\r\n\r\n" in received:  # 101: the socket stays open
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    return Answer(received)


def header_lines_bytes(headers):
    """What the server's limit counts for these headers: ``Name: value\\r\\n`` each."""
    return sum(len(name) + len(value) + 4 for name, value in headers)


def log_lines(server, ending, wait=True):
    """The server's log lines that end with ``ending``; with ``wait``, as soon as there is one (none
    after ``TIMEOUT``). Lines come in the order the server wrote them: once a later line is there, an
    earlier one still missing was never written, so a test can say "not logged" without sleeping."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        found = [line.rstrip("\n") for line in list(server.output) if line.rstrip("\n").endswith(ending)]
        if found or not wait or time.monotonic() > deadline:
            return found
        time.sleep(0.02)
