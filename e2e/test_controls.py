"""Every control of the README's DOM contract, driven the way a visitor drives it.

Real clicks on visible elements and real key presses, never ``element.click()`` from script; each test
waits on what a visitor would notice (state, text, focus, attributes) and fails when the control's wiring
(boot.js or widget/main.py) is removed.
"""

import re
import time

import pytest
from playwright.sync_api import expect

from widget_page import WIDGET, launcher, load, message_box

VISITOR = '[data-author="visitor"]'
CONSULTANT = '[data-author="consultant"]'
COUNTDOWN = re.compile(r"Reconnecting in (\d+) s")
# The Retry test waits until the countdown shows at least this many seconds (backoff ceilings 0.75, 1.5,
# 3, 6, 12, 24 s with full jitter: typically reached in 5-10 s, in the worst case about 30 s).
LONG_WAIT = 6





def expect_open(page):
    root = page.locator(WIDGET)
    expect(root).to_have_attribute("data-open", "true")
    expect(page.get_by_role("region", name="Chat with our consultant")).to_be_visible()
    expect(message_box(page)).to_be_focused()


def expect_closed(page):
    root = page.locator(WIDGET)
    expect(root).to_have_attribute("data-open", "false")
    expect(page.locator(".cw-panel")).to_be_hidden()
    expect(launcher(page)).to_be_visible()


def countdown_seconds(page):
    match = COUNTDOWN.search(page.locator("[data-reconnect-text]").text_content() or "")
    return int(match.group(1)) if match else None


def expect_answered(page, question):
    """The visitor's question is shown once, stored by the server, and answered once."""
    expect(page.locator(VISITOR)).to_have_text([question])
    expect(page.locator(VISITOR)).to_have_attribute("data-delivery", "delivered", timeout=5000)
    expect(page.locator(CONSULTANT)).to_have_count(1, timeout=10000)
    expect(page.locator(f"{CONSULTANT}[data-streaming]")).to_have_count(0, timeout=10000)
    expect(page.locator(CONSULTANT)).not_to_have_text("")


# ---- [data-action="open"] and [data-action="close"] (boot.js) ------------------------------------

def test_launcher_opens_the_panel_and_focuses_the_message_box(server, page):
    load(page, server.url + "/")
    expect_closed(page)
    launcher(page).click()
    expect_open(page)
    expect(page.locator(WIDGET)).to_have_attribute("data-state", "connected")


def test_launcher_opens_and_close_closes_before_python_has_loaded(server, page):
    """The launcher and Close work from the first paint, with no Python runtime at all."""
    page.route("**/core*.js", lambda route: route.abort())  # the runtime never starts
    page.goto(server.url + "/")
    expect(page.locator(WIDGET)).to_have_attribute("data-state", "loading")
    launcher(page).click()
    expect_open(page)
    page.get_by_role("button", name="Close chat").click()
    expect_closed(page)
    expect(launcher(page)).to_be_focused()
    expect(page.locator(WIDGET)).to_have_attribute("data-state", "loading")


def test_close_hides_the_panel_and_returns_focus_to_the_launcher(server, page):
    load(page, server.url + "/")
    launcher(page).click()
    expect_open(page)
    page.get_by_role("button", name="Close chat").click()
    expect_closed(page)
    expect(launcher(page)).to_be_focused()
    expect(launcher(page)).to_have_attribute("aria-expanded", "false")
    # The launcher opens it again (while open it is hidden: Close is the way out).
    page.keyboard.press("Enter")
    expect_open(page)


# ---- [data-action="retry"] ---------------------------------------------------------------------

def test_retry_now_reconnects_long_before_the_countdown_ends(server, page):
    """A long wait is pending while the server is back: a click on "Retry now" connects at once."""
    load(page, server.url + "/")
    launcher(page).click()
    server.kill()
    # Let the backoff grow (the server is down, every attempt fails) until a wait of several seconds.
    page.wait_for_function(
        """(least) => {
             const box = document.querySelector("[data-reconnect]");
             const found = /Reconnecting in (\\d+) s/.exec(box.querySelector("[data-reconnect-text]").textContent);
             return !box.hidden && found !== null && Number(found[1]) >= least;
           }""",
        arg=LONG_WAIT, timeout=45000)
    server.start()  # the same port; the widget is still waiting for its retry timer
    seen_at = time.monotonic()
    seconds = countdown_seconds(page)
    # The countdown shows ceil(remaining) and is refreshed every 250 ms: remaining > seconds - 1.25.
    assert seconds is not None and seconds >= 4, f"the wait ran out while the server restarted ({seconds} s left)"
    budget = min(3.0, seconds - 1.5)  # clearly shorter than the countdown: only the click can connect in time
    retry = page.get_by_role("button", name="Retry now")
    expect(retry).to_be_visible()
    retry.click(timeout=budget * 1000)
    expect(page.locator(WIDGET)).to_have_attribute(
        "data-state", "connected", timeout=max(100, (budget - (time.monotonic() - seen_at)) * 1000))
    assert time.monotonic() - seen_at < seconds - 1.25
    expect(page.get_by_role("status")).to_have_text("Connected")
    expect(page.locator("[data-reconnect]")).to_be_hidden()


def test_retry_is_offered_after_a_terminal_failure(start_server, page):
    """Origin refused -> 'failed'; the lifecycle lets Retry make a new attempt, if the visitor can reach it."""
    server = start_server("--allow-origin", "https://shop.example.com")
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    load(page, server.url + "/", state="failed")
    launcher(page).click()
    page.get_by_role("button", name="Retry now").click(timeout=2000)
    page.wait_for_function("JSON.parse(window.chatWidgetDiagnostics()).events"
                           ".filter((event) => event.event === 'attempt').length >= 2", timeout=5000)
    assert len(sockets) >= 2


# ---- form[data-chat-form]: Send, Enter, Shift+Enter ----------------------------------------------

def test_send_button_sends_and_the_consultant_answers(server, page):
    load(page, server.url + "/")
    launcher(page).click()
    message_box(page).press_sequentially("When are you open?")
    page.get_by_role("button", name="Send").click()
    expect(message_box(page)).to_have_value("")
    expect_answered(page, "When are you open?")


def test_enter_sends(server, page):
    load(page, server.url + "/")
    launcher(page).click()
    message_box(page).press_sequentially("Do you deliver abroad?")
    page.keyboard.press("Enter")
    expect(message_box(page)).to_have_value("")
    expect_answered(page, "Do you deliver abroad?")


def test_shift_enter_is_a_new_line_not_a_send(server, page):
    load(page, server.url + "/")
    launcher(page).click()
    box = message_box(page)
    box.press_sequentially("Can I return a rug")
    page.keyboard.press("Shift+Enter")
    expect(box).to_have_value("Can I return a rug\n")  # a send would have emptied the box
    box.press_sequentially("bought in May?")
    page.keyboard.press("Enter")
    expect(box).to_have_value("")
    expect(page.locator(VISITOR)).to_have_count(1)
    expect(page.locator(VISITOR)).to_have_attribute("data-delivery", "delivered", timeout=5000)
    assert page.locator(VISITOR).text_content() == "Can I return a rug\nbought in May?"


# ---- [data-action="copy-diagnostics"] -----------------------------------------------------------

def refused_and_alerting(start_server, page):
    """The page's own origin is refused: 'failed' at once, with the alert and its Copy button."""
    server = start_server("--allow-origin", "https://shop.example.com")
    load(page, server.url + "/", state="failed")
    launcher(page).click()
    expect(page.get_by_role("alert")).to_be_visible()
    return server


def expect_report(text, server):
    assert text.startswith("Chat widget diagnostics"), text[:200]
    assert "socket URL: " + server.url.replace("http://", "ws://") + "/ws" in text, text[:400]
    assert "classification: origin" in text


def test_copy_diagnostics_puts_the_report_on_the_clipboard(start_server, page, context):
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    server = refused_and_alerting(start_server, page)
    page.evaluate("navigator.clipboard.writeText('')")
    page.get_by_role("button", name="Copy diagnostics").click()
    expect(page.locator("[data-copy-note]")).to_have_text("Copied. Paste it into your message to our support.")
    expect(page.locator("[data-diagnostics]")).to_be_hidden()
    expect_report(page.evaluate("navigator.clipboard.readText()"), server)


BREAK_CLIPBOARD = {
    # e.g. a permission policy or the browser refusing: writeText rejects.
    "denied": "navigator.clipboard.writeText = () => Promise.reject(new DOMException('denied', 'NotAllowedError'));",
    # e.g. a plain-http page (not a secure context): there is no navigator.clipboard.
    "missing": "Object.defineProperty(Navigator.prototype, 'clipboard', {get: () => undefined});",
}


@pytest.mark.parametrize("clipboard", sorted(BREAK_CLIPBOARD))
def test_copy_diagnostics_without_a_clipboard_shows_the_report_to_copy(clipboard, start_server, page):
    page.add_init_script(BREAK_CLIPBOARD[clipboard])
    server = refused_and_alerting(start_server, page)
    page.get_by_role("button", name="Copy diagnostics").click()
    expect(page.locator("[data-copy-note]")).to_have_text("Select the text below and copy it.")
    box = page.get_by_role("textbox", name="Diagnostics")
    expect(box).to_be_visible()
    expect(box).to_have_value(re.compile("^Chat widget diagnostics"))
    expect_report(box.input_value(), server)
