"""The HTTP fallback in-process, through Quart's test client: what a widget sees when its channel's connection is
slow or never ran, and what the server keeps for an open it refuses (tests/test_polling.py: the real server)."""

import asyncio
import inspect

from server.transport import polling
from server.transport.channels import PollSocket
from server.transport.socket import ChatConnection

SHOP = "https://shop.example.com"
ALLOWED = {"Origin": SHOP}
TEXT = {**ALLOWED, "Content-Type": "text/plain;charset=UTF-8"}


class StalledConnection(ChatConnection):
    """Takes no frame, as a connection busy elsewhere: the widget's POSTs wait in the channel."""

    async def run(self):
        await asyncio.Event().wait()


async def open_connections(client):
    health = await (await client.get("/healthz")).get_json()
    return health["checks"]["websocket:connections"][0]["observedValue"]


async def test_full_queue_gets_429_and_a_frame_too_large_still_closes_with_1009(app, client):
    """32 frames wait, the 33rd gets 429 with Retry-After; a frame over the limit then gets 413 and the close 1009."""
    app.extensions["chat_connection_class"] = StalledConnection
    channel = (await (await client.post("/poll?v=1", headers=ALLOWED)).get_json())["channel"]
    answers = [await client.post(f"/poll/{channel}", data='{"type":"ping"}', headers=TEXT)
               for _ in range(PollSocket.inbox_size + 1)]
    assert [answer.status_code for answer in answers] == [204] * PollSocket.inbox_size + [429]
    full = answers[-1]
    assert full.headers["Retry-After"] == "1" and full.headers["Access-Control-Expose-Headers"] == "Retry-After"
    assert (await full.get_json())["error"] == "queue_full"
    too_large = await client.post(f"/poll/{channel}", data="x" * 16385, headers=TEXT)
    assert too_large.status_code == 413 and (await too_large.get_json())["error"] == "frame_too_large"
    polled = await (await client.get(f"/poll/{channel}?from=0", headers=ALLOWED)).get_json()
    assert polled == {"from": 0, "frames": [], "close": {"code": 1009, "reason": "frame larger than 16384 bytes"}}
    assert await open_connections(client) == 0


async def test_refused_opens_answer_their_close_and_keep_nothing(make_app):
    """Another version (4001) and a full server (1013): 200 with the close, no channel kept, no address slot taken."""
    app = make_app(allow_origins=[SHOP], max_connections=1)
    client = app.test_client()
    version = await client.post("/poll?v=2", headers=ALLOWED)
    kept = await (await client.post("/poll?v=1", headers=ALLOWED)).get_json()
    assert await open_connections(client) == 1
    full = await client.post("/poll?v=1", headers=ALLOWED)
    for answer in (version, full):
        assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == SHOP
    assert await version.get_json() == {"close": {"code": 4001,
                                                  "reason": "unsupported protocol version; server speaks v1"}}
    assert await full.get_json() == {"close": {"code": 1013, "reason": "server is full; try again later"}}
    assert list(app.extensions["chat_channels"].open) == [kept["channel"]]
    assert list(app.extensions["chat_hub"].addresses.counts.values()) == [1]
    assert app.extensions["chat_hub"].rejected_total == 2


async def test_channel_ended_before_its_connection_ran_frees_its_slot(make_app):
    """A channel ended before its connection's first step (say, by a shutdown at that moment) leaves no count
    behind: the address's only slot is free again and /healthz counts no connection."""
    app = make_app(allow_origins=[SHOP], max_connections_per_address=1)
    # In a request context of its own, so the test can act before the connection's task takes a step.
    async with app.test_request_context("/poll?v=1", method="POST", headers=ALLOWED):
        await polling.open_channel()
        [channel] = app.extensions["chat_channels"].open.values()
        assert inspect.getcoroutinestate(channel.task.get_coro()) == inspect.CORO_CREATED
        channel.end()
    assert await open_connections(app.test_client()) == 0
    async with app.test_request_context("/poll?v=1", method="POST", headers=ALLOWED):  # the same address
        again = await polling.open_channel()
    assert again.status_code == 200 and "channel" in await again.get_json()
