"""No message lost or doubled: queued while down, resent after lost acks and crashes, replayed after reloads."""

import json

import pytest
from playwright.sync_api import expect

VISITOR = '[data-author="visitor"]'
CONSULTANT = '[data-author="consultant"]'
QUESTIONS = ["When are you open?", "Do you deliver abroad?", "Can I return a rug?"]


def send(page, text):
    page.fill('textarea[name="message"]', text)
    page.press('textarea[name="message"]', "Enter")


def state_is(page, state, timeout):
    page.wait_for_selector(f'#chat-widget[data-state="{state}"]', timeout=timeout)


def expect_conversation(page, questions):
    """Each question shown once, delivered, in order, and answered exactly once."""
    expect(page.locator(VISITOR)).to_have_text(questions, timeout=10000)
    for item in page.locator(VISITOR).all():
        expect(item).to_have_attribute("data-delivery", "delivered")
    expect(page.locator(CONSULTANT)).to_have_count(len(questions), timeout=10000)
    expect(page.locator(f'{CONSULTANT}[data-streaming]')).to_have_count(0)


@pytest.fixture(params=["websocket", "poll"])
def sqlite_server(request, start_server, tmp_path, page):
    """The server with a SQLite store; each test runs over WebSocket and over the HTTP fallback (forced
    with ``http_fallback=always``), and checks at the end that the conversation ran on that transport."""
    transport = request.param
    fallback = {"CHAT_WIDGET_HTTP_FALLBACK": "always"} if transport == "poll" else {}
    yield lambda env=None: start_server("--store", str(tmp_path / "chat.sqlite3"), env={**fallback, **(env or {})})
    if request.node.rep_call.passed:
        assert json.loads(page.evaluate("window.chatWidgetDiagnostics()"))["transport"] == transport


def test_messages_typed_while_server_down_are_delivered_once_in_order(sqlite_server, open_chat):
    """Server stopped: three messages show as queued; after restart each is delivered and answered once."""
    server = sqlite_server()
    page = open_chat(server.url + "/")
    server.kill()
    state_is(page, "reconnecting", timeout=2000)
    for question in QUESTIONS:
        send(page, question)
    expect(page.locator(f'{VISITOR}[data-delivery="queued"]')).to_have_count(3)
    server.start()
    # A shortcut past a pending backoff wait, not a test of the button (the widget may already have
    # reconnected by itself, and then the button is hidden). e2e/test_controls.py presses "Retry now".
    page.evaluate("document.querySelector('[data-action=retry]').click()")
    state_is(page, "connected", timeout=5000)
    expect_conversation(page, QUESTIONS)


def test_lost_ack_is_resent_and_stored_once(sqlite_server, open_chat):
    """The socket drops after the server stored a message but before the ack: resent, shown and answered once."""
    server = sqlite_server(env={"CHAT_WIDGET_FAULTS": "drop_ack_once"})
    page = open_chat(server.url + "/")
    send(page, QUESTIONS[0])
    state_is(page, "reconnecting", timeout=3000)
    state_is(page, "connected", timeout=5000)
    expect_conversation(page, QUESTIONS[:1])
    assert "fault injected fault=drop_ack_once" in server.log_text()


def test_crash_with_unacknowledged_message_loses_nothing(sqlite_server, open_chat):
    """SIGKILL while a message is stored but unacknowledged: after restart it is resent, deduplicated, answered once."""
    server = sqlite_server(env={"CHAT_WIDGET_FAULTS": "stall_ack_once,reply_delay=30"})
    page = open_chat(server.url + "/")
    send(page, QUESTIONS[0])
    expect(page.locator(VISITOR)).to_have_attribute("data-delivery", "sent")
    server.kill()
    server.env = {key: value for key, value in server.env.items() if key != "CHAT_WIDGET_FAULTS"}
    server.start()
    # A shortcut past a pending backoff wait, not a test of the button (the widget may already have
    # reconnected by itself, and then the button is hidden). e2e/test_controls.py presses "Retry now".
    page.evaluate("document.querySelector('[data-action=retry]').click()")
    state_is(page, "connected", timeout=5000)
    expect_conversation(page, QUESTIONS[:1])


def test_reload_shows_whole_conversation_once_in_order(sqlite_server, open_chat):
    """Reloading mid-conversation shows every message again, in order, with no duplicates."""
    server = sqlite_server()
    page = open_chat(server.url + "/")
    for question in QUESTIONS[:2]:
        send(page, question)
        expect(page.locator(CONSULTANT)).to_have_count(QUESTIONS.index(question) + 1)
    page.reload()
    page.click('[data-action="open"]')
    state_is(page, "connected", timeout=5000)
    expect_conversation(page, QUESTIONS[:2])
    send(page, QUESTIONS[2])
    expect_conversation(page, QUESTIONS)


def test_reply_produced_while_offline_is_shown_after_reconnect(sqlite_server, open_chat, context):
    """A reply finished while the visitor's socket was down appears once after reconnecting."""
    server = sqlite_server(env={"CHAT_WIDGET_FAULTS": "reply_delay=1.5"})
    page = open_chat(server.url + "/")
    send(page, QUESTIONS[0])
    expect(page.locator(VISITOR)).to_have_attribute("data-delivery", "delivered")
    expect(page.locator("[data-typing]")).to_be_visible()
    context.set_offline(True)
    state_is(page, "offline", timeout=1000)
    context.set_offline(False)
    state_is(page, "connected", timeout=3000)
    expect_conversation(page, QUESTIONS[:1])
    expect(page.locator("[data-typing]")).to_be_hidden()
