"""/metrics as an operator meets it: closed by default, the text format for allowed addresses, and
counters that move with what visitors do, in one process and added up across worker processes."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from quart.testing import WebsocketResponseError

from protocol import frames
from server.metrics import Metrics, NoMetrics

SHOP = "https://shop.example.com"
ALLOWED = {"Origin": SHOP}
SCRAPER = {"client": ("10.9.8.7", 40000)}  # Prometheus's address, as the server sees it
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def app(make_app):
    return make_app(allow_origins=[SHOP], metrics_allow=["10.9.8.0/24"])


@pytest.fixture
def client(app):
    return app.test_client()


def parse(text):
    """``{(sample name, ((label, value), ...)): value}`` of an exposition."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


async def scrape(client):
    answer = await client.get("/metrics", scope_base=SCRAPER)
    assert answer.status_code == 200, await answer.get_data(as_text=True)
    return parse(await answer.get_data(as_text=True))


async def join(socket, session=None, last_seq=0):
    hello = {"type": "hello", "last_seq": last_seq, **({"session": session} if session else {})}
    await socket.send(json.dumps(hello))
    return json.loads(await socket.receive())


async def receive_until(socket, kind):
    while (frame := json.loads(await socket.receive()))["type"] != kind:
        pass
    return frame


async def test_metrics_are_refused_by_default_naming_the_setting(make_app):
    """Nobody may read /metrics until metrics_allow names them: 403 saying which setting opens it."""
    client = make_app(allow_origins=[SHOP]).test_client()
    answer = await client.get("/metrics", scope_base=SCRAPER, headers=ALLOWED)
    text = await answer.get_data(as_text=True)
    assert answer.status_code == 403
    assert "--metrics-allow" in text and "CHAT_WIDGET_METRICS_ALLOW" in text and "10.9.8.7" in text
    assert answer.headers["Cache-Control"] == "no-store"
    assert "Access-Control-Allow-Origin" not in answer.headers  # no page may read it, allowed origin or not
    assert "chat_widget" not in text


async def test_an_allowed_address_reads_the_text_format_and_others_do_not(client):
    """An address inside metrics_allow gets the Prometheus text format, never cached; one outside gets 403."""
    answer = await client.get("/metrics", scope_base=SCRAPER, headers=ALLOWED)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert answer.headers["Cache-Control"] == "no-store"
    assert "Access-Control-Allow-Origin" not in answer.headers
    samples = parse(await answer.get_data(as_text=True))
    assert value(samples, "chat_widget_open_connections", transport="websocket") == 0
    for outsider in ("10.9.9.1", None):
        refused = await client.get("/metrics", scope_base={"client": (outsider, 1)} if outsider else None)
        assert refused.status_code == 403


async def test_an_ipv4_address_reaching_an_ipv6_socket_is_still_itself(make_app):
    """A dual-stack listener reports ::ffff:10.9.8.7: it matches 10.9.8.0/24 as 10.9.8.7 would."""
    client = make_app(metrics_allow=["10.9.8.0/24"]).test_client()
    answer = await client.get("/metrics", scope_base={"client": ("::ffff:10.9.8.7", 1)})
    assert answer.status_code == 200


async def test_a_chat_over_the_socket_moves_the_counters(app, client):
    """One visitor's chat: the socket counted open then closed, its message, the round trip to the ack,
    the reply's wait and the store calls behind them, and a new conversation joined."""
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        await join(socket)
        during = await scrape(client)
        await socket.send(json.dumps({"type": "message", "id": "m1", "text": "When are you open?"}))
        await receive_until(socket, "ack")
        await receive_until(socket, "reply")
    after = await scrape(client)
    assert value(during, "chat_widget_open_connections", transport="websocket") == 1
    assert value(after, "chat_widget_open_connections", transport="websocket") == 0
    assert value(after, "chat_widget_handshakes_accepted_total", transport="websocket") == 1
    assert value(after, "chat_widget_session_joins_total", outcome="new") == 1
    assert value(after, "chat_widget_visitor_messages_total") == 1
    assert value(after, "chat_widget_message_round_trip_seconds_count") == 1
    assert 0 < value(after, "chat_widget_message_round_trip_seconds_sum") < 5
    assert value(after, "chat_widget_reply_latency_seconds_count") == 1
    assert value(after, "chat_widget_store_call_duration_seconds_count", operation="add_visitor_message") == 1
    assert value(after, "chat_widget_store_call_duration_seconds_count", operation="add_reply") == 1
    assert type(app.extensions["chat_store"]).__name__ == "MemoryStore"  # what /healthz names


async def test_refusals_are_counted_by_reason_for_both_transports(client):
    """A refused origin on the socket and on the HTTP fallback, and another protocol version: each
    counted under its reason, nothing under the others."""
    with pytest.raises(WebsocketResponseError):
        async with client.websocket("/ws", headers={"Origin": "https://evil.example.net"}) as socket:
            await socket.receive()
    assert (await client.post("/poll?v=1", headers={"Origin": "https://evil.example.net"})).status_code == 403
    assert "close" in await (await client.post("/poll?v=2", headers=ALLOWED)).get_json()
    samples = await scrape(client)
    refused = {reason: value(samples, "chat_widget_handshakes_refused_total", reason=reason)
               for reason in ("origin", "version", "headers", "draining", "full", "address")}
    assert refused == {"origin": 2, "version": 1, "headers": 0, "draining": 0, "full": 0, "address": 0}
    assert value(samples, "chat_widget_handshakes_accepted_total", transport="websocket") == 0


async def test_a_resumed_hello_counts_as_a_reconnect(client):
    """A hello that resumes its session, and one whose session is gone, are told apart from a new one."""
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        session = (await join(socket))["session"]
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        assert (await join(socket, session))["resumed"] is True
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        assert (await join(socket, "gone" * 8))["expired"] is True
    samples = await scrape(client)
    joins = {outcome: value(samples, "chat_widget_session_joins_total", outcome=outcome)
             for outcome in ("new", "resumed", "expired")}
    assert joins == {"new": 1, "resumed": 1, "expired": 1}


async def test_failure_reports_are_counted_by_class(client):
    """A widget's report naming interference twice and unreachable once: one report under each class."""
    failures = [{"class": "interference", "code": 1006, "after": 0.4}] * 2 + [
        {"class": "unreachable", "code": 4100, "after": 5.0}]
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        await join(socket)
        await socket.send(json.dumps(frames.report(3, failures, "websocket", None, {"online": True})))
        await socket.send(json.dumps({"type": "ping", "t": 1}))
        await receive_until(socket, "pong")  # the report before it was handled
    samples = await scrape(client)
    assert value(samples, "chat_widget_failure_reports_total", failure_class="interference") == 1
    assert value(samples, "chat_widget_failure_reports_total", failure_class="unreachable") == 1
    assert value(samples, "chat_widget_failure_reports_total", failure_class="origin") == 0


async def eventually(client, expected, name, **labels):
    """The sample's value once it is ``expected`` (a channel's connection runs in a task of its own)."""
    for _ in range(100):
        if value(await scrape(client), name, **labels) == expected:
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"{name}{labels} never became {expected}")


async def test_a_fallback_channel_counts_under_poll(client):
    """An HTTP fallback channel is an open connection of transport poll until the widget closes it."""
    channel = (await (await client.post("/poll?v=1", headers=ALLOWED)).get_json())["channel"]
    await eventually(client, 1, "chat_widget_open_connections", transport="poll")
    assert value(await scrape(client), "chat_widget_handshakes_accepted_total", transport="poll") == 1
    await client.post(f"/poll/{channel}/close", headers=ALLOWED)
    await eventually(client, 0, "chat_widget_open_connections", transport="poll")


async def test_loop_lag_is_the_hubs_at_scrape_time(app, client):
    """An overloaded event loop shows in /metrics as it does in /healthz."""
    app.extensions["chat_hub"].loop_lag = 0.3
    assert value(await scrape(client), "chat_widget_event_loop_lag_seconds") == 0.3


def test_no_metrics_stands_in_for_every_method():
    """Code without an app (unit tests) counts through NoMetrics: it must answer whatever Metrics does."""
    wanted = {name for name in vars(Metrics) if not name.startswith("_")} - {"instrument_store", "exposition"}
    assert wanted <= set(vars(NoMetrics))


WORKER = """
import asyncio, json, os, sys
from server.app import create_app
from server.config import Config

async def main(role, other_pid):
    app = create_app(Config(store="memory", allow_origins=["https://shop.example.com"], metrics_allow=["127.0.0.1"]))
    client = app.test_client()
    async with client.websocket("/ws", headers={"Origin": "https://shop.example.com"}) as socket:
        await socket.send(json.dumps({"type": "hello", "last_seq": 0}))
        await socket.receive()
        await socket.send(json.dumps({"type": "message", "id": "m1", "text": "When are you open?"}))
        while json.loads(await socket.receive())["type"] != "reply":
            pass
    if role == "first":  # ends with a channel open and its loop late, as a worker that was killed
        app.extensions["chat_metrics"].connection_opened("poll")
        app.extensions["chat_metrics"].loop_lag(0.25)
        print(os.getpid())
        return
    app.extensions["chat_hub"].loop_lag = 0.05
    for _ in range(2):
        print((await (await client.get("/metrics", scope_base={"client": ("127.0.0.1", 1)})).get_data(as_text=True)))
        print("----")
        from prometheus_client.multiprocess import mark_process_dead
        mark_process_dead(int(other_pid))  # what the workers' parent does when one ends

asyncio.run(main(*sys.argv[1:]))
"""


def run_worker(metrics_dir, *args):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    done = subprocess.run([sys.executable, "-c", WORKER, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_workers_are_added_up_and_a_dead_ones_gauges_leave(tmp_path):
    """Two worker processes sharing PROMETHEUS_MULTIPROC_DIR: /metrics, answered by one, sums both
    workers' counts; a dead worker's open connections and loop lag leave once it is marked dead, and
    its counts stay (a total never goes backwards)."""
    first_pid = run_worker(tmp_path, "first", "0").strip()
    before, after, _ = run_worker(tmp_path, "second", first_pid).split("----")
    before, after = parse(before), parse(after)
    for samples in (before, after):
        assert value(samples, "chat_widget_visitor_messages_total") == 2
        assert value(samples, "chat_widget_handshakes_accepted_total", transport="websocket") == 2
        assert value(samples, "chat_widget_message_round_trip_seconds_count") == 2
        assert value(samples, "chat_widget_reply_latency_seconds_count") == 2
        assert value(samples, "chat_widget_open_connections", transport="websocket") == 0
    assert value(before, "chat_widget_open_connections", transport="poll") == 1
    assert value(before, "chat_widget_event_loop_lag_seconds") == 0.25  # the worst worker's
    assert value(after, "chat_widget_open_connections", transport="poll") == 0
    assert value(after, "chat_widget_event_loop_lag_seconds") == 0.05

