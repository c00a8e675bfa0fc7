"""The server-driven heartbeat in real Chromium: the widget lets the server's beats prove the socket alive
instead of pinging every 4 s, and still finds a socket that went silent within 15 s.

The silent socket is real: a TCP relay (tests/tcp_proxy.py) that starts swallowing the server's bytes on
the open connection, so the browser's socket stays open and nothing closes it but the widget.
"""

import json
import time

from playwright.sync_api import expect

from tests.tcp_proxy import Relay
from widget_page import WIDGET, chat, launcher, open_chat


def frame_type(payload):
    try:
        return json.loads(payload).get("type")
    except (TypeError, ValueError, AttributeError):
        return None


def test_beats_replace_the_pings_while_they_arrive(server, page):
    """Three beats (about 10 to 15 s) reach the connected widget, and it sends no ping meanwhile."""
    frames = []  # (direction, type) on every socket the page opens
    page.on("websocket", lambda socket: (
        socket.on("framesent", lambda payload: frames.append(("sent", frame_type(payload)))),
        socket.on("framereceived", lambda payload: frames.append(("received", frame_type(payload))))))
    frame = open_chat(page, server.url + "/")
    deadline = time.monotonic() + 20
    while frames.count(("received", "beat")) < 3:
        assert time.monotonic() < deadline, frames
        page.wait_for_timeout(100)  # lets Playwright deliver the socket events; the condition is the beats
    assert ("sent", "ping") not in frames, frames
    expect(frame.locator(WIDGET)).to_have_attribute("data-state", "connected")


def test_a_socket_that_goes_silent_is_found_dead_within_15_s(server, page):
    """The relay starts withholding the server's frames on the live socket: the widget leaves "connected"
    within 15 s (at most 14 s after the last beat it saw), without any close from the network."""
    with Relay(server.port) as relay:
        page.goto(relay.url + "/")
        launcher(page).click()
        widget = chat(page).locator(WIDGET)
        expect(widget).to_have_attribute("data-state", "connected", timeout=15000)
        relay.set_mode("withhold", existing=True)
        silent_from = time.monotonic()
        expect(widget).not_to_have_attribute("data-state", "connected", timeout=15000)
        assert time.monotonic() - silent_from <= 15.0
