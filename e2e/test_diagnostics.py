"""Each way chat can fail is created for real and gets its own explanation, not just '1006'.

The widget lives in its frame (``widget_page.chat``) and connects once the panel is opened; its
diagnostics (``window.chatWidgetDiagnostics``) are the frame's.
"""

import json
import re

from playwright.sync_api import expect

from host_site import chat_url
from server_process import free_port
from widget_page import WIDGET, launcher, load, message_box

ALERT = '[role="alert"]'


def state_is(frame, state, timeout):
    frame.wait_for_selector(f'{WIDGET}[data-state="{state}"]', timeout=timeout)


def diagnostics(frame):
    return json.loads(frame.evaluate("() => window.chatWidgetDiagnostics()"))


def test_server_down_is_explained_as_unreachable(server, open_chat):
    """Server gone (HTTP and socket): after a few attempts the alert says the chat server can't be reached."""
    frame = open_chat(server.url + "/")
    server.kill()
    expect(frame.locator(ALERT)).to_contain_text("can't reach the chat", timeout=15000)
    report = diagnostics(frame)
    assert report["classification"] == "unreachable"
    assert any(e["event"] == "close" and e["code"] == 1006 for e in report["events"])
    assert any(e["event"] == "probe" and e["result"] == "unreachable" for e in report["events"])
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "reconnecting")  # still trying


def test_http_works_but_socket_blocked_is_explained_as_interference(start_server, page):
    """Health answers but every socket upgrade fails (like a proxy stripping Upgrade), and the HTTP
    fallback is turned off: 'network or proxy', not 'unreachable'."""
    port = free_port()
    server = start_server("--socket-url", f"ws://127.0.0.1:{port}/blocked", port=port,
                          env={"CHAT_WIDGET_HTTP_FALLBACK": "off"})
    frame = load(page, server.url + "/")
    launcher(page).click()
    expect(frame.locator(ALERT)).to_contain_text("network or a proxy is interrupting live chat", timeout=15000)
    assert diagnostics(frame)["classification"] == "interference"


def test_refused_origin_report_can_be_copied_without_message_texts(start_server, page, context):
    """'Copy diagnostics' copies a plain report naming the cause; it holds no message text.

    The socket's server (--socket-url, another host name) does not allow the widget's origin."""
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    port = free_port()
    server = start_server("--allow-origin", "https://shop.example.com", "--socket-url", f"ws://127.0.0.1:{port}/ws",
                          port=port)
    frame = load(page, chat_url(server))  # page and widget at http://localhost:<port>, the socket at 127.0.0.1
    launcher(page).click()
    message_box(page).fill("my secret order number 4711")
    message_box(page).press("Enter")
    state_is(frame, "failed", timeout=5000)
    frame.click('[data-action="copy-diagnostics"]')
    expect(frame.locator("[data-copy-note]")).to_contain_text("Copied")
    text = page.evaluate("() => navigator.clipboard.readText()")
    assert "classification: origin" in text and "code=1006" in text and server.url.replace("http", "ws") in text
    assert "4711" not in text and "4711" not in frame.evaluate("() => window.chatWidgetDiagnostics()")


def test_bad_widget_configuration_is_named(server, page):
    """A wrong socket URL in the widget's settings fails at once, when the panel opens, with a
    configuration error naming the setting."""
    def break_settings(route):
        response = route.fetch()
        html = re.sub(r'"socket_url": "[^"]*"', '"socket_url": "ftp://chat.example.com/ws"', response.text())
        assert html != response.text()
        route.fulfill(response=response, body=html)

    page.route("**/embed/frame?*", break_settings)
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket))
    frame = load(page, server.url + "/")
    launcher(page).click()
    state_is(frame, "failed", timeout=5000)
    alert = frame.locator(ALERT)
    expect(alert).to_contain_text("configuration error")
    expect(alert).to_contain_text("socket_url")
    assert sockets == []


def test_restarting_server_is_explained_as_restarting(server, open_chat):
    """A graceful restart (1012) says the service is restarting, then recovers by itself."""
    frame = open_chat(server.url + "/")
    server.terminate()
    expect(frame.locator(ALERT)).to_contain_text("restarting", timeout=3000)
    server.start()
    state_is(frame, "connected", timeout=35000)
    expect(frame.locator(ALERT)).to_be_hidden()
