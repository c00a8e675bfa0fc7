"""Two instances behind the shipped nginx, sharing a real Redis, seen by a visitor in real Chromium:
the instance holding the visitor's socket dies (SIGKILL) while it writes a reply, the widget
reconnects through nginx to the other, and the reply arrives exactly once; Redis restarting shows as a
temporary problem and the widget recovers by itself, losing nothing."""

import sys
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from nginx import Nginx, require_nginx  # noqa: E402
from redis_server import RedisServer  # noqa: E402

VISITOR = '[data-author="visitor"]'
CONSULTANT = '[data-author="consultant"]'


def send(frame, text):
    frame.fill('textarea[name="message"]', text)
    frame.press('textarea[name="message"]', "Enter")


def state_is(frame, state, timeout):
    frame.wait_for_selector(f'#chat-widget[data-state="{state}"]', timeout=timeout)


def open_sockets(server):
    health = httpx.get(server.url + "/healthz", timeout=5).json()
    return health["checks"]["websocket:connections"][0]["observedValue"]


@pytest.fixture
def redis_url():
    with RedisServer() as redis:
        yield redis, redis.url(0)


def test_the_instance_writing_a_reply_dies_and_the_reply_arrives_once(redis_url, start_server, open_chat):
    require_nginx()
    _, url = redis_url
    env = {"CHAT_WIDGET_FAULTS": "reply_delay=2", "CHAT_WIDGET_REPLY_LEASE": "2"}
    a, b = (start_server("--store", url, "--trusted-proxy", "127.0.0.1", env=env) for _ in range(2))
    with Nginx.deployed([a.port, b.port]) as proxy:
        frame = open_chat(proxy.url + "/")
        send(frame, "Can I return a lamp I bought last week?")
        expect(frame.locator(f"{CONSULTANT}[data-streaming]")).to_have_count(1, timeout=5000)  # being written
        holder, other = (a, b) if open_sockets(a) == 1 else (b, a)
        assert open_sockets(holder) == 1 and open_sockets(other) == 0
        holder.kill()
        state_is(frame, "reconnecting", timeout=5000)
        state_is(frame, "connected", timeout=10000)
        expect(frame.locator(f"{CONSULTANT}:not([data-streaming])")).to_have_count(1, timeout=15000)
        assert "took over 1 question" in other.log_text()
        expect(frame.locator(VISITOR)).to_have_count(1)
        expect(frame.locator(CONSULTANT)).to_have_count(1)
        expect(frame.locator(CONSULTANT)).to_contain_text("return")
        assert open_sockets(other) == 1


def test_redis_restarting_is_a_temporary_problem_the_widget_gets_over(redis_url, start_server, open_chat):
    redis, url = redis_url
    server = start_server("--store", url)
    frame = open_chat(server.url + "/")
    send(frame, "When are you open?")
    expect(frame.locator(f"{CONSULTANT}:not([data-streaming])")).to_have_count(1, timeout=10000)
    redis.stop()
    send(frame, "Do you deliver abroad?")  # refused with 4203: it stays in the outbox
    state_is(frame, "reconnecting", timeout=10000)
    expect(frame.locator("[data-alert]")).to_contain_text("temporary problem", timeout=10000)
    expect(frame.locator(f'{VISITOR}[data-delivery="delivered"]')).to_have_count(1)
    redis.restart()
    state_is(frame, "connected", timeout=30000)
    expect(frame.locator(f'{VISITOR}[data-delivery="delivered"]')).to_have_count(2, timeout=10000)
    expect(frame.locator(f"{CONSULTANT}:not([data-streaming])")).to_have_count(2, timeout=10000)
    expect(frame.locator(VISITOR)).to_have_text(["When are you open?", "Do you deliver abroad?"])
