"""Several real server instances sharing one real Redis: a conversation goes on wherever the visitor
reconnects, a reply reaches the visitor on another instance, a question whose instance dies mid-reply is
answered once by another, a session's message rate holds across instances, and a Redis restart loses
nothing acknowledged."""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

import live
from redis_server import RedisServer

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parent.parent


def instance(redis_url, *args, env=None):
    return live.start("--store", redis_url, *args, env=env)


@pytest.fixture
def cluster(redis_url):
    """``cluster(n, *args, env=...)``: n instances on the test's Redis database, stopped afterwards."""
    started = []

    def start(count, *args, env=None):
        servers = [instance(redis_url, *args, env=env) for _ in range(count)]
        started.extend(servers)
        return servers

    yield start
    for server in started:
        server.stop()


async def frames_until(ws, stop, timeout=15.0):
    """Frames received until ``stop(frame)`` is true (that frame included)."""
    got = []
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            got.append(frame)
            if stop(frame):
                return got


async def quiet_for(ws, seconds):
    """Frames arriving within ``seconds`` (none expected after an answer)."""
    got = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                got.append(json.loads(await ws.recv()))
    except TimeoutError:
        pass
    return got


async def ask(ws, message_id, text):
    await ws.send(json.dumps({"type": "message", "id": message_id, "text": text}))


def replies_to(frames, message_id):
    return [f for f in frames if f["type"] == "reply" and f["in_reply_to"] == message_id]


async def test_a_conversation_goes_on_on_another_instance_and_a_reply_reaches_it_there(cluster):
    """Asked on A, answered while the visitor is on B: the reply reaches B live, once; replay from either
    instance shows the question and its one answer."""
    a, b = cluster(2, env={"CHAT_WIDGET_FAULTS": "reply_delay=1.5"})
    async with live.opened(a) as ws:
        welcome = await live.join(ws)
        await ask(ws, "m1", "How long does shipping take?")
        ack = await frames_until(ws, lambda f: f["type"] == "ack")
        session = welcome["session"]
    async with live.opened(b) as ws:
        await ws.send(json.dumps({"type": "hello", "session": session, "last_seq": ack[-1]["seq"]}))
        got = await frames_until(ws, lambda f: f["type"] == "reply")
        assert got[0]["type"] == "welcome" and got[0]["resumed"], got[0]
        assert len(replies_to(got, "m1")) == 1
        assert not replies_to(await quiet_for(ws, 1.0), "m1")
    for server in (a, b):
        async with live.opened(server) as ws:
            await ws.send(json.dumps({"type": "hello", "session": session, "last_seq": 0}))
            got = await frames_until(ws, lambda f: f["type"] == "reply")
            assert [f["type"] for f in got] == ["welcome", "message", "reply"], got


async def test_when_the_answering_instance_dies_mid_reply_another_answers_once(cluster):
    """A takes the question and dies (SIGKILL) while answering; B answers it once A's lease lapses, under
    the same reply id, and never twice."""
    a, b = cluster(2, env={"CHAT_WIDGET_FAULTS": "reply_delay=2", "CHAT_WIDGET_REPLY_LEASE": "2"})
    async with live.opened(a) as ws:
        welcome = await live.join(ws)
        await ask(ws, "m1", "Can I return a lamp?")
        got = await frames_until(ws, lambda f: f["type"] == "reply_start")
        started = got[-1]
    a.kill()
    killed_at = time.monotonic()
    async with live.opened(b) as ws:
        await ws.send(json.dumps({"type": "hello", "session": welcome["session"], "last_seq": 1}))
        got = await frames_until(ws, lambda f: f["type"] == "reply", timeout=20)
        answered_after = time.monotonic() - killed_at
        replies = replies_to(got, "m1")
        assert len(replies) == 1 and replies[0]["id"] == started["id"], got
        assert answered_after < 10, f"taken over after {answered_after:.1f} s"
        assert not replies_to(await quiet_for(ws, 2.5), "m1")  # B's own resume did not answer it again
    async with live.opened(b) as ws:
        await ws.send(json.dumps({"type": "hello", "session": welcome["session"], "last_seq": 0}))
        got = await frames_until(ws, lambda f: f["type"] == "reply")
        assert [f["type"] for f in got] == ["welcome", "message", "reply"]


async def test_a_sessions_message_rate_holds_across_instances(cluster):
    """Reconnecting to another instance does not refill the session's message bucket."""
    a, b = cluster(2, env={"CHAT_WIDGET_MESSAGE_RATE": "2", "CHAT_WIDGET_MESSAGE_PERIOD": "600",
                           "CHAT_WIDGET_MESSAGE_BURST": "2"})
    async with live.opened(a) as ws:
        welcome = await live.join(ws)
        for n in (1, 2):
            await ask(ws, f"m{n}", "hello")
            await frames_until(ws, lambda f: f["type"] == "ack")
    async with live.opened(b) as ws:
        await ws.send(json.dumps({"type": "hello", "session": welcome["session"], "last_seq": 0}))
        await frames_until(ws, lambda f: f["type"] == "welcome")
        await ask(ws, "m3", "hello again")
        got = await frames_until(ws, lambda f: f.get("id") == "m3" and f["type"] in ("ack", "error"))
        assert got[-1]["type"] == "error" and got[-1]["code"] == "rate_limited", got[-1]
        assert got[-1]["retry_after"] > 200


async def test_redis_restarting_is_a_temporary_problem_and_loses_nothing_acknowledged():
    """Redis down: /readyz 503, /healthz says why, sockets are closed with 4203 (the widget retries);
    Redis back (its AOF): readiness returns by itself, and every acknowledged message is still there."""
    with RedisServer() as redis_server:
        a = instance(redis_server.url(0))
        try:
            await _restart_redis_under(a, redis_server)
        finally:
            a.stop()


async def _restart_redis_under(a, redis_server):
    async with live.opened(a) as ws:
        welcome = await live.join(ws)
        for n in range(3):
            await ask(ws, f"m{n}", f"question {n}")
            await frames_until(ws, lambda f: f["type"] == "reply")
        redis_server.stop()
        async with httpx.AsyncClient(base_url=a.url) as http:
            for _ in range(50):
                ready = await http.get("/readyz")
                if ready.status_code == 503:
                    break
                await asyncio.sleep(0.1)
            assert ready.status_code == 503 and "store" in ready.json()["output"]
            health = (await http.get("/healthz")).json()
            assert health["checks"]["store:sessions"][0]["status"] == "fail"
            assert "4203" in health["checks"]["websocket:accepting"][0]["output"]
            await ask(ws, "m9", "while redis is down")
            with pytest.raises(ConnectionClosed) as closed:
                await frames_until(ws, lambda f: f.get("id") == "m9" and f["type"] == "ack", timeout=10)
            assert closed.value.rcvd.code == 4203
        async with live.opened(a) as refused:  # accepted only to be closed: the hello may not get out
            with pytest.raises(ConnectionClosed) as closed:
                await refused.send(json.dumps({"type": "hello"}))
                await refused.recv()
            assert closed.value.rcvd.code == 4203
        redis_server.restart()
        async with httpx.AsyncClient(base_url=a.url) as http:
            for _ in range(100):
                if (await http.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert (await http.get("/readyz")).status_code == 200
    async with live.opened(a) as ws:
        await ws.send(json.dumps({"type": "hello", "session": welcome["session"], "last_seq": 0}))
        got = await frames_until(ws, lambda f: f["type"] == "reply" and f["in_reply_to"] == "m2")
        assert got[0]["resumed"] and [f["id"] for f in got if f["type"] == "message"] == ["m0", "m1", "m2"]
        await ask(ws, "m9", "after redis came back")  # the widget resends what was never acknowledged
        await frames_until(ws, lambda f: f["type"] == "reply" and f["in_reply_to"] == "m9")


def test_workers_share_the_port_and_the_conversations(redis_url):
    """``--workers 2``: two processes answer on one port; a conversation started on one is resumed on
    whichever takes the next socket; SIGTERM stops them all with exit 0."""
    server = instance(redis_url, "--workers", "2")
    try:
        children = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True)
        assert len(children.stdout.split()) == 2, children.stdout  # forked before the URL is announced

        async def converse():
            async with live.opened(server) as ws:
                welcome = await live.join(ws)
                await ask(ws, "m1", "hello")
                await frames_until(ws, lambda f: f["type"] == "reply")
            for _ in range(4):  # the kernel spreads new connections: some land on the other worker
                async with live.opened(server) as ws:
                    await ws.send(json.dumps({"type": "hello", "session": welcome["session"], "last_seq": 0}))
                    got = await frames_until(ws, lambda f: f["type"] == "reply")
                    assert got[0]["resumed"] and len(replies_to(got, "m1")) == 1

        asyncio.run(converse())
        assert server.terminate() == 0
    finally:
        server.stop()


def test_workers_end_with_their_parent_even_when_it_is_killed(redis_url):
    """A supervisor's SIGKILL of the parent must not leave workers serving on their own."""
    server = instance(redis_url, "--workers", "2")
    try:
        children = subprocess.run(["pgrep", "-P", str(server.process.pid)], capture_output=True, text=True)
        pids = [int(pid) for pid in children.stdout.split()]
        assert len(pids) == 2
        server.kill()
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{pid}") for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    finally:
        server.stop()


def test_more_than_one_worker_without_redis_is_refused():
    result = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--workers", "2", "--store", "memory"],
                            capture_output=True, text=True, timeout=30, env={**os.environ})
    assert result.returncode == 2
    assert "workers 2 needs a store the workers share" in result.stderr and "--store redis://" in result.stderr


@pytest.mark.parametrize("value,says", [
    ("postgres://db/chat", "not a supported store URL"),
    ("redis://127.0.0.1:1/0", "does not answer"),
])
def test_a_bad_or_unreachable_store_url_is_one_clear_line_and_exit_2(value, says, tmp_path):
    result = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--port", "0", "--store", value],
                            capture_output=True, text=True, timeout=30, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "store" in lines[0] and says in lines[0], result.stderr
    assert not list(tmp_path.iterdir())  # no folder named "redis:" or "postgres:" appears



async def test_frames_the_bus_may_have_missed_are_resent_from_the_store(make_app, redis_url):
    """When the Redis bus reconnects (Redis restarted), what its watchers may have missed is sent again
    from the store: the app wires the bus's gap to the service's resync."""
    app = make_app(store=redis_url)
    async with app.test_app():
        conversations = app.extensions["chat_conversations"]
        store = app.extensions["chat_store"]
        session = await store.create_session("https://shop.example.com")
        await store.add_visitor_message(session, "m1", "Do you deliver abroad?")
        await store.add_reply(session, "r1", "m1", "Yes, to 30 countries.")
        received = []

        async def send(frame):
            received.append(frame)

        await conversations.watch(session, send)
        await conversations.bus.on_gap([session])
        assert [(f["type"], f["id"]) for f in received] == [("message", "m1"), ("reply", "r1")]
