"""No message lost or doubled: queued while down, resent after lost acks and crashes, replayed after reloads."""

import json

import pytest
from playwright.sync_api import expect

from widget_page import chat, launcher, root

VISITOR = '[data-author="visitor"]'
CONSULTANT = '[data-author="consultant"]'
QUESTIONS = ["When are you open?", "Do you deliver abroad?", "Can I return a rug?"]


def send(frame, text):
    frame.fill('textarea[name="message"]', text)
    frame.press('textarea[name="message"]', "Enter")


def state_is(frame, state, timeout):
    frame.wait_for_selector(f'#chat-widget[data-state="{state}"]', timeout=timeout)


def expect_conversation(frame, questions):
    """Each question shown once, delivered, in order, and answered exactly once."""
    expect(frame.locator(VISITOR)).to_have_text(questions, timeout=10000)
    for item in frame.locator(VISITOR).all():
        expect(item).to_have_attribute("data-delivery", "delivered")
    expect(frame.locator(CONSULTANT)).to_have_count(len(questions), timeout=10000)
    expect(frame.locator(f'{CONSULTANT}[data-streaming]')).to_have_count(0)


def retry_now(frame):
    # A shortcut past a pending backoff wait, not a test of the button (the widget may already have
    # reconnected by itself, and then the button is hidden). e2e/test_controls.py presses "Retry now".
    frame.evaluate("() => document.querySelector('[data-action=retry]').click()")


@pytest.fixture(params=["websocket", "poll"])
def sqlite_server(request, start_server, tmp_path, page):
    """The server with a SQLite store; each test runs over WebSocket and over the HTTP fallback (forced
    with ``http_fallback=always``), and checks at the end that the conversation ran on that transport."""
    transport = request.param
    fallback = {"CHAT_WIDGET_HTTP_FALLBACK": "always"} if transport == "poll" else {}
    yield lambda env=None: start_server("--store", str(tmp_path / "chat.sqlite3"), env={**fallback, **(env or {})})
    if request.node.rep_call.passed:
        assert json.loads(chat(page).evaluate("() => window.chatWidgetDiagnostics()"))["transport"] == transport


def test_messages_typed_while_server_down_are_delivered_once_in_order(sqlite_server, open_chat):
    """Server stopped: three messages show as queued; after restart each is delivered and answered once."""
    server = sqlite_server()
    frame = open_chat(server.url + "/")
    server.kill()
    state_is(frame, "reconnecting", timeout=2000)
    for question in QUESTIONS:
        send(frame, question)
    expect(frame.locator(f'{VISITOR}[data-delivery="queued"]')).to_have_count(3)
    server.start()
    retry_now(frame)
    state_is(frame, "connected", timeout=5000)
    expect_conversation(frame, QUESTIONS)


def test_lost_ack_is_resent_and_stored_once(sqlite_server, open_chat):
    """The socket drops after the server stored a message but before the ack: resent, shown and answered once."""
    server = sqlite_server(env={"CHAT_WIDGET_FAULTS": "drop_ack_once"})
    frame = open_chat(server.url + "/")
    send(frame, QUESTIONS[0])
    state_is(frame, "reconnecting", timeout=3000)
    state_is(frame, "connected", timeout=5000)
    expect_conversation(frame, QUESTIONS[:1])
    assert "fault injected fault=drop_ack_once" in server.log_text()


def test_crash_with_unacknowledged_message_loses_nothing(sqlite_server, open_chat):
    """SIGKILL while a message is stored but unacknowledged: after restart it is resent, deduplicated, answered once."""
    server = sqlite_server(env={"CHAT_WIDGET_FAULTS": "stall_ack_once,reply_delay=30"})
    frame = open_chat(server.url + "/")
    send(frame, QUESTIONS[0])
    expect(frame.locator(VISITOR)).to_have_attribute("data-delivery", "sent")
    server.kill()
    server.env = {key: value for key, value in server.env.items() if key != "CHAT_WIDGET_FAULTS"}
    server.start()
    retry_now(frame)
    state_is(frame, "connected", timeout=5000)
    expect_conversation(frame, QUESTIONS[:1])


def test_reload_shows_whole_conversation_once_in_order(sqlite_server, open_chat, page):
    """Reloading mid-conversation shows every message again, in order, with no duplicates; the conversation
    in progress reconnects at page load, before the visitor opens the panel again."""
    server = sqlite_server()
    frame = open_chat(server.url + "/")
    for question in QUESTIONS[:2]:
        send(frame, question)
        expect(frame.locator(CONSULTANT)).to_have_count(QUESTIONS.index(question) + 1)
    page.reload()
    expect(root(page)).to_have_attribute("data-open", "false")
    expect(root(page)).to_have_attribute("data-state", "connected", timeout=10000)
    launcher(page).click()
    frame = chat(page)
    state_is(frame, "connected", timeout=5000)
    expect_conversation(frame, QUESTIONS[:2])
    send(frame, QUESTIONS[2])
    expect_conversation(frame, QUESTIONS)


def test_reply_produced_while_offline_is_shown_after_reconnect(sqlite_server, open_chat, context):
    """A reply finished while the visitor's socket was down appears once after reconnecting."""
    server = sqlite_server(env={"CHAT_WIDGET_FAULTS": "reply_delay=1.5"})
    frame = open_chat(server.url + "/")
    send(frame, QUESTIONS[0])
    expect(frame.locator(VISITOR)).to_have_attribute("data-delivery", "delivered")
    expect(frame.locator("[data-typing]")).to_be_visible()
    context.set_offline(True)
    state_is(frame, "offline", timeout=1000)
    context.set_offline(False)
    state_is(frame, "connected", timeout=3000)
    expect_conversation(frame, QUESTIONS[:1])
    expect(frame.locator("[data-typing]")).to_be_hidden()
