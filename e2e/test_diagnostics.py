"""Each way chat can fail is created for real and gets its own explanation, not just '1006'."""

import json
import re

from playwright.sync_api import expect

from server_process import free_port

ALERT = '[role="alert"]'


def state_is(page, state, timeout):
    page.wait_for_selector(f'#chat-widget[data-state="{state}"]', timeout=timeout)


def diagnostics(page):
    return json.loads(page.evaluate("window.chatWidgetDiagnostics()"))


def test_server_down_is_explained_as_unreachable(server, open_chat):
    """Server gone (HTTP and socket): after a few attempts the alert says the chat server can't be reached."""
    page = open_chat(server.url + "/")
    server.kill()
    expect(page.locator(ALERT)).to_contain_text("can't reach the chat", timeout=15000)
    report = diagnostics(page)
    assert report["classification"] == "unreachable"
    assert any(e["event"] == "close" and e["code"] == 1006 for e in report["events"])
    assert any(e["event"] == "probe" and e["result"] == "unreachable" for e in report["events"])
    expect(page.locator("#chat-widget")).to_have_attribute("data-state", "reconnecting")  # still trying


def test_http_works_but_socket_blocked_is_explained_as_interference(start_server, page):
    """Health answers but every socket upgrade fails (like a proxy stripping Upgrade), and the HTTP
    fallback is turned off: 'network or proxy', not 'unreachable'."""
    port = free_port()
    server = start_server("--socket-url", f"ws://127.0.0.1:{port}/blocked", port=port,
                          env={"CHAT_WIDGET_HTTP_FALLBACK": "off"})
    page.goto(server.url + "/")
    expect(page.locator(ALERT)).to_contain_text("network or a proxy is interrupting live chat", timeout=15000)
    assert diagnostics(page)["classification"] == "interference"


def test_refused_origin_report_can_be_copied_without_message_texts(start_server, page, context):
    """'Copy diagnostics' copies a plain report naming the cause; it holds no message text."""
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    server = start_server("--allow-origin", "https://shop.example.com")
    page.goto(server.url + "/")
    page.click('[data-action="open"]')
    page.fill('textarea[name="message"]', "my secret order number 4711")
    page.press('textarea[name="message"]', "Enter")
    state_is(page, "failed", timeout=5000)
    page.click('[data-action="copy-diagnostics"]')
    expect(page.locator("[data-copy-note]")).to_contain_text("Copied")
    text = page.evaluate("navigator.clipboard.readText()")
    assert "classification: origin" in text and "code=1006" in text and server.url.replace("http", "ws") in text
    assert "4711" not in text and "4711" not in page.evaluate("window.chatWidgetDiagnostics()")


def test_bad_widget_configuration_is_named(server, page):
    """A wrong socket URL in the widget's settings fails at once with a configuration error naming the setting."""
    def break_settings(route):
        response = route.fetch()
        html = re.sub(r'"socket_url": "[^"]*"', '"socket_url": "ftp://chat.example.com/ws"', response.text())
        route.fulfill(response=response, body=html)

    page.route(server.url + "/", break_settings)
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket))
    page.goto(server.url + "/")
    state_is(page, "failed", timeout=5000)
    alert = page.locator(ALERT)
    expect(alert).to_contain_text("configuration error")
    expect(alert).to_contain_text("socket_url")
    assert sockets == []


def test_restarting_server_is_explained_as_restarting(server, open_chat):
    """A graceful restart (1012) says the service is restarting, then recovers by itself."""
    page = open_chat(server.url + "/")
    server.terminate()
    expect(page.locator(ALERT)).to_contain_text("restarting", timeout=3000)
    server.start()
    state_is(page, "connected", timeout=35000)
    expect(page.locator(ALERT)).to_be_hidden()
