"""The demo page in real Chromium against the real server: connect, chat, and stay on our own origin."""

import pytest
from playwright.sync_api import expect

from widget_page import launcher, open_panel, wait_host_state


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
