"""Connection faults in real Chromium against the real server: the widget is never stuck in 'connecting'.

The widget lives in its frame (``widget_page.chat``) on the demo page, and connects once the panel is
opened; ``open_chat`` opens it and returns the frame.
"""

import json
import re

from playwright.sync_api import expect

from blackhole import BlackHole
from host_site import chat_url
from server_process import free_port
from widget_page import WIDGET, launcher, load


def state_is(frame, state, timeout):
    frame.wait_for_selector(f'{WIDGET}[data-state="{state}"]', timeout=timeout)


def test_server_killed_then_restarted_reconnects_without_reload(server, open_chat, page):
    """SIGKILL -> reconnecting within 1 s with attempt and countdown; restart -> connected, same page."""
    frame = open_chat(server.url + "/")
    page.evaluate("() => { window.__marker = 'same page'; }")
    frame.evaluate("() => { window.__marker = 'same frame'; }")
    server.kill()
    state_is(frame, "reconnecting", timeout=1000)
    expect(frame.get_by_role("status")).to_have_text("Reconnecting…")
    reconnect = frame.locator("[data-reconnect]")
    expect(reconnect).to_be_visible()
    expect(reconnect).to_contain_text(re.compile(r"attempt \d+"))
    expect(frame.locator('[data-action="retry"]')).to_be_visible()
    server.start()
    state_is(frame, "connected", timeout=35000)
    assert page.evaluate("() => window.__marker") == "same page"
    assert frame.evaluate("() => window.__marker") == "same frame"


def test_countdown_shows_seconds_and_attempt_while_waiting(server, open_chat):
    """While the server is down the countdown reads 'Reconnecting in N s… (attempt k)' above a progress bar.

    Pressing "Retry now" during such a wait is tested the way a visitor does it in e2e/test_controls.py.
    """
    frame = open_chat(server.url + "/")
    server.kill()
    expect(frame.locator("[data-reconnect]")).to_contain_text(
        re.compile(r"Reconnecting in \d+ s… \(attempt \d+\)"), timeout=3000)
    expect(frame.locator("[data-reconnect-progress]")).to_be_visible()
    expect(frame.get_by_role("button", name="Retry now")).to_be_visible()


def test_graceful_stop_closes_with_1012_and_widget_reconnects(server, open_chat, page):
    """SIGTERM: the server tells sockets it is restarting (1012); the widget reconnects to the new one."""
    frame = open_chat(server.url + "/")
    lines = []
    page.on("console", lambda message: lines.append(message.text))  # the frame's lines too
    assert server.terminate() == 0
    state_is(frame, "reconnecting", timeout=3000)
    assert any("1012" in line for line in lines), lines
    server.start()
    state_is(frame, "connected", timeout=35000)


def test_offline_then_online(server, open_chat, context):
    """Browser offline -> 'offline' at once; back online -> connected within 1 s."""
    frame = open_chat(server.url + "/")
    context.set_offline(True)
    state_is(frame, "offline", timeout=1000)
    expect(frame.get_by_role("status")).to_contain_text("offline")
    context.set_offline(False)
    state_is(frame, "connected", timeout=1000)


def test_upgrade_never_answered_times_out_instead_of_hanging(start_server, page):
    """A server that accepts TCP but never answers the upgrade -> connect timeout -> reconnecting."""
    hole = BlackHole()
    try:
        server = start_server("--socket-url", f"ws://127.0.0.1:{hole.port}/ws")
        frame = load(page, server.url + "/")
        launcher(page).click()
        state_is(frame, "connecting", timeout=5000)
        state_is(frame, "reconnecting", timeout=7000)
    finally:
        hole.close()


def test_socket_server_refusing_the_widget_fails_with_friendly_alert_not_a_retry_loop(start_server, page):
    """The socket's server (--socket-url, another host) does not allow the widget's origin -> 'failed' with
    a plain explanation and contacts; no more attempts. (A *site* that may not embed the widget gets no
    chat at all: e2e/test_security.py.)"""
    port = free_port()
    server = start_server("--allow-origin", "https://shop.example.com", "--contact-email", "help@shop.example.com",
                          "--socket-url", f"ws://127.0.0.1:{port}/ws", port=port)
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    # The demo page and the widget at http://localhost:<port>; the socket at 127.0.0.1, which allows neither.
    frame = load(page, chat_url(server))
    launcher(page).click()
    state_is(frame, "failed", timeout=5000)
    alert = frame.get_by_role("alert")
    expect(alert).to_contain_text("not allowed to use this chat server")
    expect(alert).to_contain_text("help@shop.example.com")
    # No countdown: nothing is retried by itself; the visitor is offered Retry (e2e/test_controls.py).
    expect(frame.locator("[data-reconnect]")).to_have_text(re.compile(r"^\s*Chat has stopped\.\s*Retry now\s*$"))
    expect(frame.locator("[data-reconnect-progress]")).to_be_hidden()
    assert len(sockets) == 1
    assert "403" not in alert.inner_text() and "1006" not in alert.inner_text()


def test_console_stays_quiet_during_a_long_outage(server, open_chat, page):
    """Over a 25 s outage the widget logs a few lines, not one per attempt, and the browser's own errors stay few."""
    frame = open_chat(server.url + "/")
    lines = []
    page.on("console", lambda message: lines.append((message.type, message.text)))  # the frame's lines too
    server.kill()
    state_is(frame, "reconnecting", timeout=1000)
    page.wait_for_timeout(25_000)  # the outage itself is what is measured, not a synchronisation
    ours = [text for kind, text in lines if text.startswith("chat:")]
    browser_errors = [text for kind, text in lines if kind == "error"]
    assert len(ours) <= 4, ours
    # Backoff paces 5 to 9 retries into the first 25 s (full jitter: 99.9 % of draws, simulated with
    # widget/core/backoff.py; 6 to 14 into a minute); each costs the browser one line, and each of the
    # two probes (once per outage, again when the alert appears) one more. The first attempt is the one
    # that connected.
    report = json.loads(frame.evaluate("() => window.chatWidgetDiagnostics()"))
    attempts = [event for event in report["events"] if event["event"] == "attempt"]
    assert 6 <= len(attempts) <= 11, len(attempts)
    assert len(browser_errors) <= len(attempts) + 2, browser_errors
