"""What a visitor sees when the server's budgets say no (docs/security.md, "Budgets"): a store at its
budget, and a conversation that reached its size."""

import json
import time

import httpx
from playwright.sync_api import expect
from websockets.sync.client import connect

from test_delivery import CONSULTANT, VISITOR, retry_now, send

ALERT_TITLE = "[data-alert-title]"


def fill_store(server, megabytes):
    """One conversation with ``megabytes`` of 16 KB messages (the test server's per-address budgets are
    wide, see e2e/server_process.py, and this test's per-connection rate too)."""
    url = server.url.replace("http://", "ws://") + "/ws?v=1"
    with connect(url, origin=server.url, max_size=None, compression=None) as ws:
        ws.send(json.dumps({"type": "hello"}))
        for n in range(megabytes * 64):
            ws.send(json.dumps({"type": "message", "id": f"fill-{n}", "text": "x" * 16000}))
            while json.loads(ws.recv(timeout=5))["type"] != "ack":
                pass


def store_budget_becomes(server, status, timeout):
    """Wait until /healthz's store:budget check says ``status`` (the store is measured once a second)."""
    deadline = time.monotonic() + timeout
    while httpx.get(server.url + "/healthz").json()["checks"]["store:budget"][0]["status"] != status:
        assert time.monotonic() < deadline, f"store:budget never became {status}"
        time.sleep(0.1)


def test_a_full_store_is_explained_what_was_typed_waits_and_chat_starts_once_there_is_room(start_server, open_chat):
    """The store is at its budget: the widget says the service is very busy (not "unreachable"), keeps
    the typed question queued; once the sweeper made room, chat connects and the question is delivered
    and answered."""
    server = start_server(env={"CHAT_WIDGET_STORE_MAX_BYTES": str(1 << 20), "CHAT_WIDGET_RETENTION": "10",
                               "CHAT_WIDGET_SWEEP_INTERVAL": "1", "CHAT_WIDGET_CONVERSATION_MAX_BYTES": str(4 << 20),
                               "CHAT_WIDGET_MESSAGE_RATE": "1000", "CHAT_WIDGET_MESSAGE_BURST": "1000"})
    fill_store(server, 1)
    store_budget_becomes(server, "fail", timeout=5)

    frame = open_chat(server.url + "/", state="reconnecting")
    expect(frame.locator(ALERT_TITLE)).to_have_text(
        "The chat service is very busy and can't start a new conversation right now.")
    expect(frame.locator("[data-alert-tips]")).to_contain_text("What you type is kept")
    send(frame, "When are you open?")
    expect(frame.locator(f'{VISITOR}[data-delivery="queued"]')).to_have_count(1)

    store_budget_becomes(server, "pass", timeout=30)  # the filling conversation expired and was swept
    retry_now(frame)
    frame.wait_for_selector('#chat-widget[data-state="connected"]', timeout=10000)
    expect(frame.locator(ALERT_TITLE)).to_be_hidden()
    expect(frame.locator(f'{VISITOR}[data-delivery="delivered"]')).to_have_count(1, timeout=5000)
    expect(frame.locator(CONSULTANT)).to_have_count(1, timeout=5000)


def test_a_full_conversation_goes_on_in_a_new_one_without_losing_the_question(start_server, open_chat):
    """The conversation reaches its size (2 KiB here): the visitor is told a new conversation was started,
    and the question that did not fit is delivered and answered there."""
    server = start_server(env={"CHAT_WIDGET_MAX_MESSAGE_BYTES": "1024", "CHAT_WIDGET_CONVERSATION_MAX_BYTES": "2048"})
    frame = open_chat(server.url + "/")
    notice = frame.locator('[data-author="system"]')
    questions = ["Do you ship abroad?", "What are your opening hours?", "Can I return a rug?", "How much is delivery?"]
    asked = 0
    while notice.count() == 0:
        assert asked < 12, "the conversation never filled up"
        send(frame, questions[asked % len(questions)])
        asked += 1
        # Every question is answered, the one that did not fit too (in the new conversation).
        expect(frame.locator(CONSULTANT)).to_have_count(asked, timeout=8000)
    expect(notice).to_have_text("This conversation reached its size limit, so a new one was started. "
                                "Your message continues there.")
    expect(frame.locator(VISITOR)).to_have_count(asked)
    expect(frame.locator(f'{VISITOR}[data-delivery="delivered"]')).to_have_count(asked, timeout=5000)
    expect(frame.locator(CONSULTANT)).to_have_count(asked, timeout=5000)
    frame.wait_for_selector('#chat-widget[data-state="connected"]')
