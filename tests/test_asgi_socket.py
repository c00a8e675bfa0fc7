"""/ws as a plain ASGI endpoint in front of Quart (server/transport/asgi_socket.py), driven the way an
ASGI server drives it: a scope, a receive and a send."""

import asyncio
import json

from server.transport.asgi_socket import AsgiSocket, Disconnected

ALLOWED = [(b"origin", b"https://shop.example.com"), (b"host", b"chat.example.com")]


def scope(path="/ws", headers=ALLOWED, query=b"", root_path="", extensions=None):
    return {"type": "websocket", "path": path, "raw_path": path.encode(), "query_string": query,
            "headers": list(headers), "scheme": "wss", "http_version": "1.1", "root_path": root_path,
            "subprotocols": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 443),
            "extensions": {"websocket.http.response": {}} if extensions is None else extensions}


class Client:
    """One socket's client side: what the app sent, and frames to give it once it accepts."""

    def __init__(self, app, **scope_args):
        self.incoming = asyncio.Queue()
        self.incoming.put_nowait({"type": "websocket.connect"})
        self.sent = []
        self.arrived = asyncio.Event()
        self.task = asyncio.create_task(app(scope(**scope_args), self.incoming.get, self.send))

    async def send(self, event):
        self.sent.append(event)
        self.arrived.set()

    def frame(self, value):
        self.incoming.put_nowait({"type": "websocket.receive", "text": json.dumps(value)})

    def frames(self):
        return [json.loads(event["text"]) for event in self.sent if event["type"] == "websocket.send"]

    async def until(self, test):
        while not test():
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 5)

    def leave(self):
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": 1001})


async def test_a_socket_is_accepted_joined_and_answered_in_order_then_ends_when_the_client_leaves(app):
    hub = app.extensions["chat_hub"]
    async with app.test_app():
        client = Client(app)
        client.frame({"type": "hello"})
        for n in range(3):
            client.frame({"type": "ping", "t": n})
        await client.until(lambda: len(client.frames()) == 4)
        assert client.sent[0]["type"] == "websocket.accept"
        assert [frame["type"] for frame in client.frames()] == ["welcome", "pong", "pong", "pong"]
        assert [frame["t"] for frame in client.frames()[1:]] == [0, 1, 2]
        assert len(hub.open) == 1
        client.leave()
        await asyncio.wait_for(client.task, 5)  # ends by itself: no task left waiting for the socket
        assert len(hub.open) == 0
        assert not [event for event in client.sent if event["type"] == "websocket.close"]  # nothing to close


async def test_each_socket_runs_in_the_servers_task_alone(app):
    """No task of its own per socket (Quart ran two more: its receiver and the handler): held sockets
    cost one task each, the server's."""
    async with app.test_app():
        before = len(asyncio.all_tasks())
        clients = [Client(app) for _ in range(20)]
        for client in clients:
            client.frame({"type": "hello"})
        for client in clients:
            await client.until(lambda: client.frames())
        assert len(asyncio.all_tasks()) - before == len(clients)
        for client in clients:
            client.leave()
        await asyncio.wait_for(asyncio.gather(*(client.task for client in clients)), 5)


async def test_a_refused_handshake_gets_its_status_or_a_plain_close_without_the_response_extension(app):
    async with app.test_app():
        client = Client(app, headers=[(b"origin", b"https://evil.example.net")])
        await asyncio.wait_for(client.task, 5)
        assert client.sent[0] == {"type": "websocket.http.response.start", "status": 403,
                                  "headers": [(b"content-type", b"text/plain; charset=utf-8")]}
        assert client.sent[1]["body"] == b"Origin not allowed\n"
        bare = Client(app, headers=[(b"origin", b"https://evil.example.net")], extensions={})
        await asyncio.wait_for(bare.task, 5)
        assert bare.sent == [{"type": "websocket.close", "code": 1000}]  # Uvicorn answers it with 403


async def test_the_handshake_is_read_case_blind_first_value_first(app):
    """Header names in any case, the first of repeated headers and query arguments (as Werkzeug reads
    them): a second Origin or v cannot override the first."""
    async with app.test_app():
        client = Client(app, query=b"v=1&v=9",
                        headers=[(b"Origin", b"https://shop.example.com"), (b"origin", b"https://evil.example.net")])
        client.frame({"type": "hello"})
        await client.until(lambda: client.frames())
        assert client.frames()[0]["type"] == "welcome"
        client.leave()
        await asyncio.wait_for(client.task, 5)
        other = Client(app, query=b"v=9&v=1")
        await asyncio.wait_for(other.task, 5)
        assert other.sent[-1]["code"] == 4001


async def test_the_path_is_routed_below_the_mount_point_and_other_paths_reach_quart(app):
    async with app.test_app():
        mounted = Client(app, path="/chat/ws", root_path="/chat")
        mounted.frame({"type": "hello"})
        await mounted.until(lambda: mounted.frames())
        mounted.leave()
        await asyncio.wait_for(mounted.task, 5)
        elsewhere = Client(app, path="/ws/")  # not our endpoint: Quart's 404
        await asyncio.wait_for(elsewhere.task, 5)
        assert elsewhere.sent[0]["type"] == "websocket.http.response.start" and elsewhere.sent[0]["status"] == 404


async def test_the_socket_closes_once_and_raises_disconnected_when_the_client_is_gone():
    sent = []
    events = asyncio.Queue()

    async def send(event):
        sent.append(event)

    socket = AsgiSocket(events.get, send)
    await socket.close(1008, "limit")
    await socket.close(1011, "again")
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "limit"}]
    for event in ({"type": "websocket.connect"}, {"type": "websocket.receive", "bytes": b"\x00"},
                  {"type": "websocket.disconnect", "code": 1006}):
        events.put_nowait(event)
    assert await socket.receive() == b"\x00"
    try:
        await socket.receive()
    except Disconnected as gone:
        assert gone.args == (1006,)
    else:
        raise AssertionError("receive after the disconnect returned")


async def test_a_refused_handshake_is_logged_as_a_refusal_not_as_a_server_error():
    """The real server under Uvicorn: a 403 is one warning of ours, not also Uvicorn's ERROR "ASGI callable
    returned without completing handshake" (its refusal path never marks the handshake done)."""
    import live
    from websockets.exceptions import InvalidStatus

    server = live.start()
    try:
        try:
            async with live.opened(server, origin="https://evil.example.net"):
                raise AssertionError("a foreign origin was upgraded")
        except InvalidStatus as refused:
            assert refused.response.status_code == 403
        # The refused socket's task ended before its answer left the server; one joined after it is
        # logged after anything that task logged.
        async with live.opened(server) as ws:
            await live.join(ws)
            deadline = asyncio.get_running_loop().time() + 10
            while "connection opened" not in server.log_text():
                assert asyncio.get_running_loop().time() < deadline, server.log_text()
                await asyncio.sleep(0.05)
        log = server.log_text()
        assert "handshake rejected status=403" in log
        assert "without completing handshake" not in log and "level=ERROR" not in log, log
    finally:
        server.stop()
