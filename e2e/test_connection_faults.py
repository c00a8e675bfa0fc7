"""Connection faults in real Chromium against the real server: the widget is never stuck in 'connecting'."""

import json
import re

from playwright.sync_api import expect

from blackhole import BlackHole

WIDGET = "#chat-widget"


def state_is(page, state, timeout):
    page.wait_for_selector(f'{WIDGET}[data-state="{state}"]', timeout=timeout)


def test_server_killed_then_restarted_reconnects_without_reload(server, open_chat):
    """SIGKILL -> reconnecting within 1 s with attempt and countdown; restart -> connected, same page."""
    page = open_chat(server.url + "/")
    page.evaluate("window.__marker = 'same page'")
    server.kill()
    state_is(page, "reconnecting", timeout=1000)
    expect(page.get_by_role("status")).to_have_text("Reconnecting…")
    reconnect = page.locator("[data-reconnect]")
    expect(reconnect).to_be_visible()
    expect(reconnect).to_contain_text(re.compile(r"attempt \d+"))
    expect(page.locator('[data-action="retry"]')).to_be_visible()
    server.start()
    state_is(page, "connected", timeout=35000)
    assert page.evaluate("window.__marker") == "same page"


def test_countdown_shows_seconds_and_attempt_while_waiting(server, open_chat):
    """While the server is down the countdown reads 'Reconnecting in N s… (attempt k)' above a progress bar.

    Pressing "Retry now" during such a wait is tested the way a visitor does it in e2e/test_controls.py.
    """
    page = open_chat(server.url + "/")
    server.kill()
    expect(page.locator("[data-reconnect]")).to_contain_text(
        re.compile(r"Reconnecting in \d+ s… \(attempt \d+\)"), timeout=3000)
    expect(page.locator("[data-reconnect-progress]")).to_be_visible()
    expect(page.get_by_role("button", name="Retry now")).to_be_visible()


def test_graceful_stop_closes_with_1012_and_widget_reconnects(server, open_chat):
    """SIGTERM: the server tells sockets it is restarting (1012); the widget reconnects to the new one."""
    page = open_chat(server.url + "/")
    lines = []
    page.on("console", lambda message: lines.append(message.text))
    assert server.terminate() == 0
    state_is(page, "reconnecting", timeout=3000)
    assert any("1012" in line for line in lines), lines
    server.start()
    state_is(page, "connected", timeout=35000)


def test_offline_then_online(server, open_chat, context):
    """Browser offline -> 'offline' at once; back online -> connected within 1 s."""
    page = open_chat(server.url + "/")
    context.set_offline(True)
    state_is(page, "offline", timeout=1000)
    expect(page.get_by_role("status")).to_contain_text("offline")
    context.set_offline(False)
    state_is(page, "connected", timeout=1000)


def test_upgrade_never_answered_times_out_instead_of_hanging(start_server, page):
    """A server that accepts TCP but never answers the upgrade -> connect timeout -> reconnecting."""
    hole = BlackHole()
    try:
        server = start_server("--socket-url", f"ws://127.0.0.1:{hole.port}/ws")
        page.goto(server.url + "/")
        state_is(page, "connecting", timeout=5000)
        state_is(page, "reconnecting", timeout=7000)
    finally:
        hole.close()


def test_frozen_server_half_open_is_detected_by_heartbeat(server, open_chat):
    """SIGSTOP (a half-open connection): the heartbeat notices within 15 s; SIGCONT -> connected again."""
    page = open_chat(server.url + "/")
    server.freeze()
    try:
        state_is(page, "reconnecting", timeout=15000)
    finally:
        server.thaw()
    state_is(page, "connected", timeout=35000)


def test_disallowed_origin_fails_with_friendly_alert_not_a_retry_loop(start_server, page):
    """The page's origin is not allowed -> 'failed' with a plain explanation and contacts; no more attempts."""
    server = start_server("--allow-origin", "https://shop.example.com", "--contact-email", "help@shop.example.com")
    sockets = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.goto(server.url + "/")
    page.click('[data-action="open"]')
    state_is(page, "failed", timeout=5000)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("not allowed to use this chat server")
    expect(alert).to_contain_text("help@shop.example.com")
    # No countdown: nothing is retried by itself; the visitor is offered Retry (e2e/test_controls.py).
    expect(page.locator("[data-reconnect]")).to_have_text(re.compile(r"^\s*Chat has stopped\.\s*Retry now\s*$"))
    expect(page.locator("[data-reconnect-progress]")).to_be_hidden()
    assert len(sockets) == 1
    assert "403" not in alert.inner_text() and "1006" not in alert.inner_text()


def test_console_stays_quiet_during_a_long_outage(server, open_chat):
    """Over a 60 s outage the widget logs a few lines, not one per attempt, and the browser's own errors stay few."""
    page = open_chat(server.url + "/")
    lines = []
    page.on("console", lambda message: lines.append((message.type, message.text)))
    server.kill()
    state_is(page, "reconnecting", timeout=1000)
    page.wait_for_timeout(60_000)  # the outage itself is what is measured, not a synchronisation
    ours = [text for kind, text in lines if text.startswith("chat:")]
    browser_errors = [text for kind, text in lines if kind == "error"]
    assert len(ours) <= 4, ours
    # Backoff paces 6 to 14 retries into the first minute (full jitter: 99.9 % of draws, simulated
    # with widget/core/backoff.py); each costs the browser one line, and each of the two probes (once
    # per outage, again when the alert appears) one more. The first attempt is the one that connected.
    report = json.loads(page.evaluate("window.chatWidgetDiagnostics()"))
    attempts = [event for event in report["events"] if event["event"] == "attempt"]
    assert 7 <= len(attempts) <= 15, len(attempts)
    assert len(browser_errors) <= len(attempts) + 2, browser_errors
