"""Wiring that no other browser test noticed when it was removed (found by breaking each one on purpose).

Each test here fails when the named wiring of widget/shell/main.py, widget/shell/view.py or
widget/boot.js is removed, and passes on the real code. Waits are on conditions, never fixed sleeps.
The widget (Python and boot.js) runs in its frame (``widget_page.chat``) on the demo page.
"""

import json
import re
import time

from playwright.sync_api import expect

from blackhole import BlackHole
from host_site import chat_url
from server_process import free_port
from widget_page import FRAME, WIDGET, launcher, load, message_box, open_chat, wait_host_state

CONSULTANT = '[data-author="consultant"]'
COUNTDOWN = re.compile(r"Reconnecting in (\d+) s")

# Headless Chromium keeps every page visible (Playwright has no API to hide one: microsoft/playwright
# issues 2286 and 3570; bring_to_front and minimising the window change nothing), so switching tabs is
# played by the page itself: what document.visibilityState says, and the event the browser sends.
HIDE_TAB = """() => {
  Object.defineProperty(document, "visibilityState", {configurable: true, get: () => "hidden"});
  Object.defineProperty(document, "hidden", {configurable: true, get: () => true});
  document.dispatchEvent(new Event("visibilitychange"));
}"""
SHOW_TAB = """() => {
  delete document.visibilityState;
  delete document.hidden;
  document.dispatchEvent(new Event("visibilitychange"));
}"""


def rewrite_page(page, url, change):
    """Serve the page at ``url`` changed by ``change(text) -> text``."""
    def fulfill(route):
        response = route.fetch()
        route.fulfill(response=response, body=change(response.text()))

    page.route(url, fulfill)


FRAME_URL = "**/embed/frame?*"  # the widget's frame document (widget/frame.html)


def switch_tab(page, script):
    """A tab switch changes the visibility of the host page and of the widget's frame alike."""
    for frame in page.frames:
        frame.evaluate(script)


# ---- visibilitychange (main.py) -----------------------------------------------------------------

def test_hidden_tab_retries_slowly_and_coming_back_reconnects_at_once(server, page):
    """Hidden: an outage waits 15-30 s between attempts. Visible again: the widget tries at once."""
    frame = open_chat(page, server.url + "/")
    switch_tab(page, HIDE_TAB)
    server.kill()
    # A visible tab would retry within 0.75 s; a hidden one is paced to 15-30 s.
    frame.wait_for_function(
        """() => {
             const found = /Reconnecting in (\\d+) s/.exec(document.querySelector("[data-reconnect-text]").textContent);
             return found !== null && Number(found[1]) >= 14;
           }""", timeout=5000)
    server.start()
    seconds = COUNTDOWN.search(frame.locator("[data-reconnect-text]").text_content()).group(1)
    assert int(seconds) >= 10, f"the hidden wait is nearly over ({seconds} s left)"
    switch_tab(page, SHOW_TAB)
    # Only the return to the tab can connect this soon: the retry timer is still 10 s or more away.
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "connected", timeout=3000)


# ---- cancel_timer (main.py) ---------------------------------------------------------------------

def test_a_quick_reconnect_leaves_one_heartbeat(start_server, page, context):
    """Offline and back within a second: the new socket is pinged every 4 s, not also by the old heartbeat.
    (A server without beats, so the widget pings on every tick: e2e/test_heartbeat.py covers the beats.)"""
    server = start_server(env={"CHAT_WIDGET_HEARTBEAT": "0"})
    frame = open_chat(page, server.url + "/")
    context.set_offline(True)
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "offline", timeout=2000)
    with page.expect_websocket() as opened:
        context.set_offline(False)
    socket = opened.value
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "connected", timeout=3000)

    def is_ping(payload):
        try:
            return json.loads(payload).get("type") == "ping"
        except (TypeError, ValueError, AttributeError):
            return False

    times = []
    for _ in range(2):
        socket.wait_for_event("framesent", predicate=is_ping, timeout=6000)
        times.append(time.monotonic())
    # ping_interval is 4 s: a heartbeat of the closed socket left running pings in between.
    assert times[1] - times[0] >= 3.0, f"two pings {times[1] - times[0]:.2f} s apart"


# ---- ShowNotice (main.py) -----------------------------------------------------------------------

def test_a_conversation_the_server_lost_is_told_to_the_visitor(start_server, page):
    """The server restarts without its memory: the widget says the earlier conversation has expired."""
    server = start_server("--store", "memory")
    frame = load(page, server.url + "/")
    launcher(page).click()
    message_box(page).press_sequentially("When are you open?")
    page.keyboard.press("Enter")
    expect(frame.locator(CONSULTANT)).to_have_count(1, timeout=10000)
    server.kill()
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "reconnecting", timeout=2000)
    server.start()
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "connected", timeout=15000)
    expect(frame.locator('[data-author="system"]')).to_have_text(
        ["Your earlier conversation has expired, so this is a new one."])


# ---- view.offer_retry / view.show_reconnect ------------------------------------------------------

def test_a_terminal_failure_says_chat_has_stopped_and_offers_retry(start_server, page):
    """Origin refused (the socket's server, another host, does not allow the widget's origin) -> 'failed':
    no countdown left over from the first attempt, just 'stopped' and Retry."""
    port = free_port()
    server = start_server("--allow-origin", "https://shop.example.com", "--socket-url", f"ws://127.0.0.1:{port}/ws",
                          port=port)
    frame = load(page, chat_url(server))  # page and widget at http://localhost:<port>, the socket at 127.0.0.1
    launcher(page).click()
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "failed", timeout=5000)
    expect(frame.locator("[data-reconnect-text]")).to_have_text("Chat has stopped.")
    expect(frame.locator("[data-reconnect-progress]")).to_be_hidden()
    expect(frame.get_by_role("button", name="Retry now")).to_be_visible()


def test_retry_is_hidden_while_an_attempt_is_under_way(start_server, page):
    """A handshake that hangs: while the attempt runs there is nothing to retry, so no Retry button."""
    hole = BlackHole()
    try:
        server = start_server("--socket-url", f"ws://127.0.0.1:{hole.port}/ws")
        page.goto(server.url + "/")
        launcher(page).click()
        frame = page.frame_locator(FRAME)
        # The first attempt times out after 5 s; the next starts within 0.75 s and hangs as well.
        expect(frame.locator("[data-reconnect-text]")).to_have_text(
            re.compile(r"^Reconnecting now… \(attempt \d+\)$"), timeout=10000)
        expect(frame.get_by_role("button", name="Retry now")).to_be_hidden(timeout=1000)
    finally:
        hole.close()


# ---- boot.js (in the frame): the native-submit guard, the loading timeout -------------------------

def test_send_before_python_runs_is_cancelled_even_without_our_csp(server, page):
    """Served without its CSP (form-action 'none'), as by a proxy that drops the header, boot.js alone
    keeps the text out of the frame's URL until Python takes over."""
    def without_csp(route):
        response = route.fetch()
        headers = {name: value for name, value in response.headers.items()
                   if name.lower() != "content-security-policy"}
        route.fulfill(response=response, headers=headers)

    page.route(FRAME_URL, without_csp)
    page.route("**/core*.js", lambda route: route.abort())  # Python never starts
    page.add_init_script("""window.addEventListener("submit",
      (event) => console.log(event.defaultPrevented ? "submit: cancelled" : "submit: native"));""")
    with page.expect_response(lambda response: "/embed/frame?" in response.url) as served:
        page.goto(server.url + "/")
    assert "content-security-policy" not in served.value.headers
    launcher(page).click()
    message_box(page).press_sequentially("my order number is 12345")
    frame = page.frame(name="chat-widget")
    frame_url = frame.url
    with page.expect_console_message(lambda message: message.text.startswith("submit: ")) as submitted:
        page.frame_locator(FRAME).get_by_role("button", name="Send").click(no_wait_after=True)
    assert submitted.value.text == "submit: cancelled", "Send submitted the form natively (GET ?message=...)"
    assert frame.url == frame_url and "12345" not in frame.url
    assert page.url == server.url + "/"


def test_a_runtime_that_never_starts_is_reported(server, page):
    """The Python runtime does not load: after the loading timeout boot.js says so, instead of 'Loading chat…'."""
    rewrite_page(page, FRAME_URL, lambda html: re.sub(r'data-loading-timeout="\d+"', 'data-loading-timeout="1"', html))
    page.route("**/core*.js", lambda route: route.abort())
    page.goto(server.url + "/")
    launcher(page).click()
    frame = page.frame_locator(FRAME)
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "failed", timeout=5000)
    expect(frame.get_by_role("status")).to_have_text("Chat could not start")
    alert = frame.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("The chat could not load in your browser.")
    wait_host_state(page, "failed", timeout=1000)  # told to the host page (window.chatWidget.state)
