"""The server through Quart's test client: handshake policy, health shape, protocol round trip."""

import json

import pytest
from quart.testing import WebsocketResponseError
from quart.testing.connections import WebsocketDisconnectError

from server.transport.socket import ChatConnection

ALLOWED = {"Origin": "https://shop.example.com"}


async def join(socket, session=None, last_seq=0):
    """Send hello and return the welcome frame."""
    hello = {"type": "hello", "last_seq": last_seq}
    if session:
        hello["session"] = session
    await socket.send(json.dumps(hello))
    return json.loads(await socket.receive())


async def receive_until(socket, kind):
    """Frames up to and including the first of the given type."""
    frames = []
    while not frames or frames[-1]["type"] != kind:
        frames.append(json.loads(await socket.receive()))
    return frames


async def test_allowed_origin_handshake_gets_welcome(client):
    """An allowed origin is accepted and greeted with the protocol version."""
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        welcome = await join(socket)
    assert welcome["type"] == "welcome" and welcome["v"] == 1 and welcome["resumed"] is False
    assert len(welcome["session"]) >= 32


@pytest.mark.parametrize("origin", [
    "https://evil.example.net",
    "https://shop.example.com.evil.net",   # prefix trick
    "http://shop.example.com",             # wrong scheme
    "https://shop.example.com:8443",       # wrong port
    "https://example.org",                 # apex is not a subdomain
    "https://a.example.org.evil.net",      # wildcard prefix trick
    "null",
])
async def test_disallowed_origin_gets_403_before_upgrade(client, origin):
    """A disallowed Origin is refused with HTTP 403, never upgraded."""
    with pytest.raises(WebsocketResponseError) as refused:
        async with client.websocket("/ws", headers={"Origin": origin}) as socket:
            await socket.receive()
    assert refused.value.response.status_code == 403


async def test_missing_origin_refused_by_default(client):
    """A handshake without Origin (a non-browser client) is refused unless allowed by setting."""
    with pytest.raises(WebsocketResponseError) as refused:
        async with client.websocket("/ws") as socket:
            await socket.receive()
    assert refused.value.response.status_code == 403


async def test_wildcard_subdomain_allowed(client):
    """*.example.org allows a subdomain at any depth."""
    async with client.websocket("/ws", headers={"Origin": "https://a.b.example.org"}) as socket:
        assert (await join(socket))["type"] == "welcome"


async def test_same_origin_default(make_app):
    """With no allowed origins configured, only the server's own origin (its Host) may connect."""
    client = make_app().test_client()
    async with client.websocket("/ws", headers={"Origin": "http://localhost", "Host": "localhost"}) as socket:
        assert (await join(socket))["type"] == "welcome"
    with pytest.raises(WebsocketResponseError):
        async with client.websocket("/ws", headers={"Origin": "http://other.test", "Host": "localhost"}) as socket:
            await socket.receive()


@pytest.mark.parametrize("own", [("http://localhost", "localhost"), ("http://chat.test:8080", "chat.test:8080")])
async def test_the_servers_own_origin_may_connect_when_other_sites_are_allowed(client, own):
    """The widget runs in a frame served by this server, so its socket's Origin is the server's own:
    --allow-origin names the sites that embed it, and never locks out the frame."""
    origin, host = own
    async with client.websocket("/ws", headers={"Origin": origin, "Host": host}) as socket:
        assert (await join(socket))["type"] == "welcome"
    with pytest.raises(WebsocketResponseError) as refused:  # the same host on another port is another origin
        async with client.websocket("/ws", headers={"Origin": "http://chat.test:9090", "Host": "chat.test:8080"}):
            pass
    assert refused.value.response.status_code == 403


async def test_ws_check_allows_the_servers_own_origin_when_other_sites_are_allowed(client):
    """What the frame's /ws-check (which names its own origin, the server's) is told: allowed."""
    named = await (await client.get("/ws-check?origin=http://localhost", headers={"Host": "localhost"})).get_json()
    assert named["allowed"] is True and named["reason"] == "same origin"
    sent = await client.get("/ws-check", headers={"Origin": "http://localhost", "Host": "localhost"})
    assert (await sent.get_json())["allowed"] is True and "header_bytes" in await sent.get_json()
    other = await (await client.get("/ws-check?origin=http://localhost:81", headers={"Host": "localhost"})).get_json()
    assert other["allowed"] is False


async def test_message_is_acknowledged_and_answered(client):
    """A visitor message gets an ack with its id, then a reply attributed to it."""
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        await join(socket)
        await socket.send(json.dumps({"type": "message", "id": "m1", "text": "When are you open?"}))
        frames = await receive_until(socket, "reply")
    assert {"type": "ack", "id": "m1", "seq": 1} in frames
    reply = frames[-1]
    assert reply["in_reply_to"] == "m1" and "Monday" in reply["text"] and reply["seq"] == 2


async def test_ping_gets_pong_with_same_time(client):
    """Application-level ping is answered with a pong echoing t."""
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        await socket.send(json.dumps({"type": "ping", "t": 12.5}))
        assert json.loads(await socket.receive()) == {"type": "pong", "t": 12.5}


@pytest.mark.parametrize("raw, code", [
    ("not json", "invalid_json"),
    ("[1, 2]", "invalid_frame"),
    ('{"type": "launch"}', "unknown_type"),
    ('{"type": "message", "id": "m1"}', "missing_field"),
    ('{"type": "message", "id": "m1", "text": 5}', "wrong_type"),
    ('{"type": "message", "id": "m1", "text": "hi", "extra": 1}', "unknown_field"),
    ('{"type": "message", "id": "", "text": "hi"}', "invalid_id"),
    ('{"type": "message", "id": "m1", "text": "   "}', "empty_text"),
])
async def test_bad_frames_get_error_and_connection_stays_usable(client, raw, code):
    """Each malformed frame gets a specific error frame; the socket keeps working."""
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        await join(socket)
        await socket.send(raw)
        error = json.loads(await socket.receive())
        assert error["type"] == "error" and error["code"] == code
        await socket.send(json.dumps({"type": "ping"}))
        assert json.loads(await socket.receive()) == {"type": "pong"}


async def test_unsupported_protocol_version_is_closed_with_4001(client):
    """A widget speaking another protocol version is told so with close code 4001."""
    async with client.websocket("/ws?v=2", headers=ALLOWED) as socket:
        with pytest.raises(WebsocketDisconnectError) as closed:
            await socket.receive()
    assert closed.value.args[0] == 4001


async def test_healthz_shape(client):
    """/healthz answers application/health+json with pass and a websocket check."""
    response = await client.get("/healthz")
    body = await response.get_json()
    assert response.status_code == 200
    assert response.content_type == "application/health+json"
    assert body["status"] == "pass"
    assert body["checks"]["websocket:accepting"][0]["status"] == "pass"
    assert body["checks"]["websocket:connections"][0]["observedValue"] == 0
    for name in ("eventloop:lag", "store:sessions", "consultant:configured", "runtime:assets"):
        assert body["checks"][name][0]["status"] == "pass", name


async def test_healthz_counts_open_sockets(client):
    """An open socket shows up in the connections check."""
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        await join(socket)
        body = await (await client.get("/healthz")).get_json()
    assert body["checks"]["websocket:connections"][0]["observedValue"] == 1


async def test_healthz_fails_with_503_when_draining(app, client):
    """While draining for shutdown, health fails with 503 and explains why."""
    app.extensions["chat_hub"].draining = True
    response = await client.get("/healthz")
    body = await response.get_json()
    assert response.status_code == 503 and body["status"] == "fail"
    assert "draining" in body["checks"]["websocket:accepting"][0]["output"]


async def test_cors_headers_only_for_allowed_origins(client):
    """HTTP routes send CORS headers to allowed origins only, never '*' for them."""
    allowed = await client.get("/healthz", headers=ALLOWED)
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://shop.example.com"
    for origin in ("https://evil.example.net", "https://shop.example.com.evil.net"):
        refused = await client.get("/healthz", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in refused.headers


async def test_ws_check_tells_any_page_whether_its_origin_is_allowed(client):
    """/ws-check answers every origin (its own, with credentials) whether it may open the socket."""
    response = await client.get("/ws-check", headers={"Origin": "https://evil.example.net"})
    body = await response.get_json()
    assert response.headers["Access-Control-Allow-Origin"] == "https://evil.example.net"
    assert body["allowed"] is False and body["accepting"] is True
    same_origin = await (await client.get("/ws-check?origin=https://shop.example.com")).get_json()
    assert same_origin["allowed"] is True  # browsers send no Origin on same-origin GETs: the widget names it


async def test_demo_page_embeds_the_widget_with_the_one_tag(client):
    """The demo page is a plain site page: the widget comes from the one-tag snippet, nothing else of it."""
    html = await (await client.get("/")).get_data(as_text=True)
    assert html.count('<script src="/embed.js" async></script>') == 1
    assert 'id="chat-widget"' not in html and "pyscript" not in html.lower() and "/embed/frame" not in html


async def test_frame_carries_the_widget_in_loading_state(client):
    """The widget's frame carries the root in state 'loading', closed, and loads runtimes from this server."""
    html = await (await client.get("/embed/frame")).get_data(as_text=True)
    assert 'id="chat-widget"' in html and 'data-state="loading"' in html and 'data-open="false"' in html
    assert '"interpreter": "/vendor/micropython@1.28.0-6/micropython.mjs"' in html  # versioned, immutable


@pytest.mark.parametrize("path", ["/vendor/pyscript/../../package.json", "/vendor/pyscript/%2e%2e/%2e%2e/package.json",
                                  "/widget/..%2fserver%2fapp.py", "/vendor/nope/core.js"])
async def test_static_files_cannot_escape_their_folders(client, path):
    """Traversal attempts on static routes get 404."""
    response = await client.get(path)
    assert response.status_code == 404


async def test_healthz_reports_an_overloaded_event_loop(app, client):
    """A late event loop shows as warn, then fail (503) with an explanation."""
    app.extensions["chat_hub"].loop_lag = 0.2
    body = await (await client.get("/healthz")).get_json()
    assert body["status"] == "warn" and "overloaded" in body["checks"]["eventloop:lag"][0]["output"]
    app.extensions["chat_hub"].loop_lag = 2.0
    assert (await client.get("/healthz")).status_code == 503


async def test_message_flood_gets_rate_limited_then_closed_1008(make_app):
    """Beyond the burst a message gets a rate_limited error with retry_after; persisting closes 1008."""
    client = make_app(allow_origins=["https://shop.example.com"], message_rate=1, message_period=60,
                      message_burst=2).test_client()
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        welcome = await join(socket)
        assert welcome["limits"]["burst"] == 2
        for n in range(2):
            await socket.send(json.dumps({"type": "message", "id": f"m{n}", "text": "hi"}))
            await receive_until(socket, "reply")
        await socket.send(json.dumps({"type": "message", "id": "m2", "text": "hi"}))
        error = json.loads(await socket.receive())
        assert error["code"] == "rate_limited" and error["id"] == "m2" and error["retry_after"] > 0
        with pytest.raises(WebsocketDisconnectError) as closed:
            for n in range(3, 10):
                await socket.send(json.dumps({"type": "message", "id": f"m{n}", "text": "hi"}))
                while json.loads(await socket.receive())["code"] != "rate_limited":
                    pass
    assert closed.value.args[0] == 1008


async def test_full_server_says_try_again_later_with_1013(make_app):
    """At the connection limit a socket is accepted only to be closed with 1013, which a browser can read."""
    client = make_app(allow_origins=["https://shop.example.com"], max_connections=1).test_client()
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        await join(socket)
        async with client.websocket("/ws", headers=ALLOWED) as second:
            with pytest.raises(WebsocketDisconnectError) as closed:
                await second.receive()
    assert closed.value.args[0] == 1013


async def test_connections_per_address_are_limited_with_429(make_app):
    """Past the per-address limit a handshake is refused with 429 before the upgrade."""
    client = make_app(allow_origins=["https://shop.example.com"], max_connections_per_address=1).test_client()
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        await join(socket)
        with pytest.raises(WebsocketResponseError) as refused:
            async with client.websocket("/ws", headers=ALLOWED) as second:
                await second.receive()
        assert refused.value.response.status_code == 429


async def test_idle_socket_is_closed_with_1001(make_app):
    """A client that sends nothing for idle_timeout is closed with 1001 (going away), freeing its slot."""
    app = make_app(allow_origins=["https://shop.example.com"])

    class QuickToIdle(ChatConnection):
        idle_timeout = 0.2  # below the setting's floor, for the test's speed

    app.extensions["chat_connection_class"] = QuickToIdle
    async with app.test_client().websocket("/ws", headers=ALLOWED) as socket:
        with pytest.raises(WebsocketDisconnectError) as closed:
            await socket.receive()
    assert closed.value.args[0] == 1001


def test_every_setting_is_documented_in_the_readme():
    """The README names each setting's environment variable (config.SETTINGS is the one list)."""
    from pathlib import Path

    from server.config import SETTINGS

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    missing = [s.env for s in SETTINGS if s.name != "root" and s.env not in readme and
               (s.option is None or f"`{s.option}" not in readme)]
    assert not missing
