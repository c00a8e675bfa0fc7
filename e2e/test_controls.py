"""Every control of the README's DOM contract, driven the way a visitor drives it.

Real clicks on visible elements and real key presses, never ``element.click()`` from script; each test
waits on what a visitor would notice (state, text, focus, attributes) and fails when the control's wiring
(widget/embed.js on the host page, widget/boot.js or widget/shell/main.py in the widget's frame) is removed.
The launcher is on the host page; the panel, and every other control, is in the widget's frame.
"""

import re
import time

import pytest
from playwright.sync_api import expect

from server_process import free_port
from widget_page import FRAME, WIDGET, chat, launcher, load, message_box

VISITOR = '[data-author="visitor"]'
CONSULTANT = '[data-author="consultant"]'
COUNTDOWN = re.compile(r"Reconnecting in (\d+) s")
# The Retry test waits until the countdown shows at least this many seconds (backoff ceilings 0.75, 1.5,
# 3, 6, 12, 24 s with full jitter: typically reached in 5-10 s, in the worst case about 30 s).
LONG_WAIT = 6
# The launcher element whether shown or not (a role query finds only what is shown).
LAUNCHER = 'button[data-action="open"]'


def expect_open(page):
    frame = chat(page)
    expect(frame.locator(WIDGET)).to_have_attribute("data-open", "true")
    expect(page.locator(FRAME)).to_be_visible()
    expect(frame.get_by_role("region", name="Ask our consultant")).to_be_visible()
    expect(page.locator(LAUNCHER)).to_be_hidden()
    expect(page.locator(LAUNCHER)).to_have_attribute("aria-expanded", "true")
    expect(message_box(page)).to_be_focused()
    assert page.evaluate("() => window.chatWidget.isOpen") is True


def expect_closed(page):
    frame = chat(page)
    expect(frame.locator(WIDGET)).to_have_attribute("data-open", "false")
    expect(page.locator(FRAME)).to_be_hidden()
    expect(launcher(page)).to_be_visible()
    expect(launcher(page)).to_have_attribute("aria-expanded", "false")
    assert page.evaluate("() => window.chatWidget.isOpen") is False


def countdown_seconds(frame):
    match = COUNTDOWN.search(frame.locator("[data-reconnect-text]").text_content() or "")
    return int(match.group(1)) if match else None


def expect_answered(frame, question):
    """The visitor's question is shown once, stored by the server, and answered once."""
    expect(frame.locator(VISITOR)).to_have_text([question])
    expect(frame.locator(VISITOR)).to_have_attribute("data-delivery", "delivered", timeout=5000)
    expect(frame.locator(CONSULTANT)).to_have_count(1, timeout=10000)
    expect(frame.locator(f"{CONSULTANT}[data-streaming]")).to_have_count(0, timeout=10000)
    expect(frame.locator(CONSULTANT)).not_to_have_text("")


def close_by(page, way):
    """Close the panel the way a visitor does: the Close button, or Escape anywhere in the panel."""
    if way == "button":
        chat(page).get_by_role("button", name="Close chat").click()
    else:
        page.keyboard.press("Escape")


# ---- the launcher (embed.js, host page) and [data-action="close"] / Escape (boot.js, frame) -------

def test_launcher_opens_the_panel_and_focuses_the_message_box(server, page):
    frame = load(page, server.url + "/")
    expect_closed(page)
    launcher(page).click()
    expect_open(page)
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "connected")


@pytest.mark.parametrize("way", ["button", "escape"])
def test_launcher_opens_and_close_closes_before_python_has_loaded(way, server, page):
    """The launcher, Close and Escape work from the first paint, with no Python runtime at all."""
    page.route("**/core*.js", lambda route: route.abort())  # the runtime never starts
    page.goto(server.url + "/")
    frame = chat(page)
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "loading")
    launcher(page).click()
    expect_open(page)
    close_by(page, way)
    expect_closed(page)
    expect(launcher(page)).to_be_focused()
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "loading")


@pytest.mark.parametrize("way", ["button", "escape"])
def test_close_hides_the_panel_and_returns_focus_to_the_launcher(way, server, page):
    load(page, server.url + "/")
    launcher(page).click()
    expect_open(page)
    close_by(page, way)
    expect_closed(page)
    expect(launcher(page)).to_be_focused()
    # The launcher opens it again (while open it is hidden: Close and Escape are the ways out).
    page.keyboard.press("Enter")
    expect_open(page)


# ---- [data-action="retry"] ---------------------------------------------------------------------

def test_retry_now_reconnects_long_before_the_countdown_ends(server, page):
    """A long wait is pending while the server is back: a click on "Retry now" connects at once."""
    frame = load(page, server.url + "/")
    launcher(page).click()
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "connected")
    server.kill()
    # Let the backoff grow (the server is down, every attempt fails) until a wait of several seconds.
    frame.wait_for_function(
        """(least) => {
             const box = document.querySelector("[data-reconnect]");
             const found = /Reconnecting in (\\d+) s/.exec(box.querySelector("[data-reconnect-text]").textContent);
             return !box.hidden && found !== null && Number(found[1]) >= least;
           }""",
        arg=LONG_WAIT, timeout=45000)
    server.start()  # the same port; the widget is still waiting for its retry timer
    seen_at = time.monotonic()
    seconds = countdown_seconds(frame)
    # The countdown shows ceil(remaining) and is refreshed every 250 ms: remaining > seconds - 1.25.
    assert seconds is not None and seconds >= 4, f"the wait ran out while the server restarted ({seconds} s left)"
    budget = min(3.0, seconds - 1.5)  # clearly shorter than the countdown: only the click can connect in time
    retry = frame.get_by_role("button", name="Retry now")
    expect(retry).to_be_visible()
    retry.click(timeout=budget * 1000)
    expect(frame.locator(WIDGET)).to_have_attribute(
        "data-state", "connected", timeout=max(100, (budget - (time.monotonic() - seen_at)) * 1000))
    assert time.monotonic() - seen_at < seconds - 1.25
    expect(frame.get_by_role("status")).to_have_text("Connected")
    expect(frame.locator("[data-reconnect]")).to_be_hidden()


def refused_server(start_server):
    """A server that refuses the widget's socket for its origin: the socket is on another host name
    (``--socket-url`` names ``localhost``, the frame is on ``127.0.0.1``), so the handshake's Origin is
    not the server's own, and the allowed sites do not include it. Returns (server, socket URL)."""
    port = free_port()
    socket_url = f"ws://localhost:{port}/ws"
    server = start_server("--allow-origin", "https://shop.example.com", "--socket-url", socket_url, port=port)
    return server, socket_url


def test_retry_is_offered_after_a_terminal_failure(start_server, page):
    """Origin refused -> 'failed'; the lifecycle lets Retry make a new attempt, if the visitor can reach it."""
    server, _ = refused_server(start_server)
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    frame = load(page, server.url + "/")
    assert sockets == []  # nothing connects before the visitor opens the chat
    launcher(page).click()
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "failed")
    # Waited on as an event: the diagnostics log the attempt a moment before the browser opens its socket.
    with page.expect_websocket(timeout=5000) as retried:
        frame.get_by_role("button", name="Retry now").click(timeout=2000)
    assert retried.value.url.endswith("/ws?v=1")
    frame.wait_for_function("() => JSON.parse(window.chatWidgetDiagnostics()).events"
                            ".filter((event) => event.event === 'attempt').length >= 2", timeout=5000)
    assert len(sockets) >= 2


# ---- form[data-chat-form]: Send, Enter, Shift+Enter ----------------------------------------------

def test_send_button_sends_and_the_consultant_answers(server, page):
    frame = load(page, server.url + "/")
    launcher(page).click()
    message_box(page).press_sequentially("When are you open?")
    frame.get_by_role("button", name="Send").click()
    expect(message_box(page)).to_have_value("")
    expect_answered(frame, "When are you open?")


def test_enter_sends(server, page):
    frame = load(page, server.url + "/")
    launcher(page).click()
    message_box(page).press_sequentially("Do you deliver abroad?")
    page.keyboard.press("Enter")
    expect(message_box(page)).to_have_value("")
    expect_answered(frame, "Do you deliver abroad?")


def test_shift_enter_is_a_new_line_not_a_send(server, page):
    frame = load(page, server.url + "/")
    launcher(page).click()
    box = message_box(page)
    box.press_sequentially("Can I return a rug")
    page.keyboard.press("Shift+Enter")
    expect(box).to_have_value("Can I return a rug\n")  # a send would have emptied the box
    box.press_sequentially("bought in May?")
    page.keyboard.press("Enter")
    expect(box).to_have_value("")
    expect(frame.locator(VISITOR)).to_have_count(1)
    expect(frame.locator(VISITOR)).to_have_attribute("data-delivery", "delivered", timeout=5000)
    assert frame.locator(VISITOR).text_content() == "Can I return a rug\nbought in May?"


# ---- [data-action="copy-diagnostics"] -----------------------------------------------------------

def refused_and_alerting(start_server, page):
    """The widget's origin is refused: 'failed' as soon as the chat is opened, with the alert and its Copy
    button. Returns (frame, socket URL)."""
    server, socket_url = refused_server(start_server)
    frame = load(page, server.url + "/")
    launcher(page).click()
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "failed")
    expect(frame.get_by_role("alert")).to_be_visible()
    return frame, socket_url


def expect_report(text, socket_url):
    assert text.startswith("Chat widget diagnostics"), text[:200]
    assert "socket URL: " + socket_url in text, text[:400]
    assert "classification: origin" in text


def test_copy_diagnostics_puts_the_report_on_the_clipboard(start_server, page, context):
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    frame, socket_url = refused_and_alerting(start_server, page)
    page.evaluate("() => navigator.clipboard.writeText('')")
    frame.get_by_role("button", name="Copy diagnostics").click()
    expect(frame.locator("[data-copy-note]")).to_have_text("Copied. Paste it into your message to our support.")
    expect(frame.locator("[data-diagnostics]")).to_be_hidden()
    expect_report(page.evaluate("() => navigator.clipboard.readText()"), socket_url)


BREAK_CLIPBOARD = {
    # e.g. a permission policy or the browser refusing: writeText rejects.
    "denied": "navigator.clipboard.writeText = () => Promise.reject(new DOMException('denied', 'NotAllowedError'));",
    # e.g. a plain-http page (not a secure context): there is no navigator.clipboard.
    "missing": "Object.defineProperty(Navigator.prototype, 'clipboard', {get: () => undefined});",
}


@pytest.mark.parametrize("clipboard", sorted(BREAK_CLIPBOARD))
def test_copy_diagnostics_without_a_clipboard_shows_the_report_to_copy(clipboard, start_server, page):
    page.add_init_script(BREAK_CLIPBOARD[clipboard])  # runs in every frame, the widget's too
    frame, socket_url = refused_and_alerting(start_server, page)
    frame.get_by_role("button", name="Copy diagnostics").click()
    expect(frame.locator("[data-copy-note]")).to_have_text("Select the text below and copy it.")
    box = frame.get_by_role("textbox", name="Diagnostics")
    expect(box).to_be_visible()
    expect(box).to_have_value(re.compile("^Chat widget diagnostics"))
    expect_report(box.input_value(), socket_url)
