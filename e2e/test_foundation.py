"""The demo page in real Chromium against the real server: connect, chat, and stay on our own origin."""

import pytest
from playwright.sync_api import expect

from host_site import chat_url
from server_process import free_port
from widget_page import chat, launcher, open_chat, open_panel, wait_host_state


@pytest.mark.parametrize("runtime,fallback", [("micropython", "auto"), ("pyodide", "auto"), ("micropython", "always"),
                                              ("pyodide", "always")])
def test_widget_connects_and_consultant_replies(runtime, fallback, start_server, page):
    """On either runtime, over WebSocket and over the HTTP fallback, the widget reaches 'connected' within
    5 s (MicroPython) of the visitor opening it, and a question gets a reply."""
    server = start_server("--runtime", runtime, "--http-fallback", fallback)
    requests = []
    page.on("request", lambda request: requests.append(request.url))
    errors = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url + "/")
    expect(launcher(page)).to_be_visible()
    frame = open_panel(page)
    frame.wait_for_selector('#chat-widget[data-state="connected"]', timeout=5000 if runtime == "micropython" else 20000)
    expect(frame.get_by_role("status")).to_have_text("Connected")
    wait_host_state(page, "connected", timeout=5000)  # the host page's window.chatWidget knows it too
    frame.fill('textarea[name="message"]', "What are your opening hours?")
    frame.click('form[data-chat-form] button[type="submit"]')
    expect(frame.locator('[data-author="visitor"]')).to_have_text(["What are your opening hours?"])
    expect(frame.locator('[data-author="consultant"]')).to_contain_text(["Monday to Saturday"])
    expect(frame.locator('[data-author="visitor"]')).to_have_attribute("data-delivery", "delivered")
    foreign = [url for url in requests if not url.startswith(server.url + "/") and not url.startswith("data:")]
    assert foreign == [], f"requests left the server's origin: {foreign}"
    assert errors == []
    transport = frame.evaluate("() => JSON.parse(window.chatWidgetDiagnostics()).transport")
    assert transport == ("poll" if fallback == "always" else "websocket")



# Records in every frame who opened each WebSocket (the stack at `new WebSocket`): boot.js, or Python
# through the runtime. Init scripts run before the page's own, and outside its CSP.
SOCKET_OPENERS = """
(() => {
  const Native = window.WebSocket;
  window.__socketOpeners = [];
  function Recorded(url, protocols) {
    window.__socketOpeners.push(new Error().stack.includes("/widget/boot.js") ? "boot.js" : "python");
    return protocols === undefined ? new Native(url) : new Native(url, protocols);
  }
  Recorded.prototype = Native.prototype;
  for (const name of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) Recorded[name] = Native[name];
  window.WebSocket = Recorded;
})();
"""


def socket_openers(frame):
    return frame.evaluate("() => window.__socketOpeners")


@pytest.mark.parametrize("runtime", ["micropython", "pyodide"])
def test_a_chat_opened_before_python_runs_connects_on_the_socket_boot_js_opened(runtime, start_server, page):
    """The widget's page opened on its own is open at once: boot.js opens the socket while the runtime
    still loads, and Python takes that one: one handshake, no second socket, connected, and it chats."""
    server = start_server("--runtime", runtime)
    page.add_init_script(SOCKET_OPENERS)
    page.goto(server.url + "/embed/frame")
    page.wait_for_selector('#chat-widget[data-state="connected"]', timeout=5000 if runtime == "micropython" else 20000)
    page.fill('textarea[name="message"]', "What are your opening hours?")
    page.click('form[data-chat-form] button[type="submit"]')
    expect(page.locator('[data-author="consultant"]')).to_contain_text(["Monday to Saturday"])
    assert socket_openers(page) == ["boot.js"]


def test_a_conversation_in_progress_reconnects_on_the_socket_boot_js_opened(start_server, page):
    """After a reload mid-conversation (panel closed, so nothing was opened by the visitor) the frame's
    boot.js opens the socket while the runtime loads, Python takes it, and the conversation is back."""
    server = start_server()
    page.add_init_script(SOCKET_OPENERS)
    frame = open_chat(page, server.url + "/")
    frame.fill('textarea[name="message"]', "What are your opening hours?")
    frame.click('form[data-chat-form] button[type="submit"]')
    expect(frame.locator('[data-author="consultant"]')).to_contain_text(["Monday to Saturday"])
    page.evaluate("() => window.chatWidget.close()")
    page.reload()
    wait_host_state(page, "connected", timeout=10000)
    frame = chat(page)
    expect(frame.locator('[data-author="consultant"]')).to_contain_text(["Monday to Saturday"])
    assert socket_openers(frame) == ["boot.js"]


def test_no_early_socket_when_the_fallback_is_always_used(start_server, page):
    """With --http-fallback always the widget never opens a WebSocket, not even before Python runs."""
    server = start_server("--http-fallback", "always")
    page.add_init_script(SOCKET_OPENERS)
    page.goto(server.url + "/embed/frame")
    page.wait_for_selector('#chat-widget[data-state="connected"]', timeout=5000)
    assert socket_openers(page) == []


def test_an_early_socket_refused_before_python_runs_is_the_widgets_first_attempt(start_server, page):
    """When the socket boot.js opened is refused before Python runs, Python still gets that attempt (its
    error and close): 'failed' with the plain explanation after one handshake, not a second one."""
    port = free_port()
    # The widget at http://localhost:<port>; the socket at 127.0.0.1, which does not allow that origin.
    server = start_server("--allow-origin", "https://shop.example.com", "--socket-url", f"ws://127.0.0.1:{port}/ws",
                          port=port)
    page.add_init_script(SOCKET_OPENERS)
    page.goto(chat_url(server) + "/embed/frame")
    page.wait_for_selector('#chat-widget[data-state="failed"]', timeout=5000)
    expect(page.get_by_role("alert")).to_contain_text("not allowed to use this chat server")
    assert socket_openers(page) == ["boot.js"]
