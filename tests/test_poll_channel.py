"""Unit tests for widget/core/polling.py: the widget's side of the HTTP fallback, no network."""

import json

from widget.core.polling import CLOSE, OPEN, POLL, SEND, Closed, Frame, Opened, PollChannel, Request

BASE = "http://shop.test/poll"


def opened():
    channel = PollChannel(BASE)
    assert channel.open() == [Request(OPEN, "POST", BASE + "?v=1")]
    out = channel.answered(OPEN, 200, json.dumps({"channel": "abc", "poll_timeout": 25}))
    assert out == [Opened(), Request(POLL, "GET", BASE + "/abc?from=0")]
    return channel


def answer(first, frames, close=None):
    body = {"from": first, "frames": frames}
    if close:
        body["close"] = close
    return json.dumps(body)


def test_frames_arrive_in_order_and_the_next_poll_asks_from_the_next_number():
    channel = opened()
    out = channel.answered(POLL, 200, answer(0, [{"type": "welcome"}, {"type": "pong"}]))
    assert out == [Frame({"type": "welcome"}), Frame({"type": "pong"}), Request(POLL, "GET", BASE + "/abc?from=2")]


def test_frames_already_received_are_not_delivered_twice():
    """A poll answered again from an earlier number (the first answer was lost) skips what arrived."""
    channel = opened()
    channel.answered(POLL, 200, answer(0, [{"n": 0}, {"n": 1}]))
    out = channel.answered(POLL, 200, answer(1, [{"n": 1}, {"n": 2}]))
    assert out == [Frame({"n": 2}), Request(POLL, "GET", BASE + "/abc?from=3")]


def test_a_gap_in_the_numbers_ends_the_channel_abnormally():
    channel = opened()
    out = channel.answered(POLL, 200, answer(5, [{"n": 5}]))
    assert out == [Closed(1006, "poll skipped frames 0 to 4", False)]
    assert channel.answered(POLL, 200, answer(0, [{"n": 0}])) == []


def test_sends_go_one_at_a_time_in_order():
    channel = opened()
    assert channel.send('{"type": "ping"}') == [Request(SEND, "POST", BASE + "/abc", '{"type": "ping"}')]
    assert channel.send('{"n": 2}') == []
    assert channel.send('{"n": 3}') == []
    assert channel.answered(SEND, 204, "") == [Request(SEND, "POST", BASE + "/abc", '{"n": 2}')]
    assert channel.answered(SEND, 204, "") == [Request(SEND, "POST", BASE + "/abc", '{"n": 3}')]
    assert channel.answered(SEND, 204, "") == []


def test_server_close_in_a_poll_answer_is_a_clean_close_with_its_code():
    channel = opened()
    out = channel.answered(POLL, 200, answer(0, [{"type": "error"}], {"code": 1013, "reason": "server is full"}))
    assert out == [Frame({"type": "error"}), Closed(1013, "server is full", True)]
    assert channel.send("x") == [] and channel.close() == []


def test_failed_requests_end_the_channel_like_a_dropped_socket():
    for kind, status in ((POLL, 0), (POLL, 404), (POLL, 200), (SEND, 0), (SEND, 500)):
        channel = opened()
        if kind == SEND:
            channel.send("x")
        out = channel.answered(kind, status, "not json" if status == 200 else "")
        assert len(out) == 1 and out[0].code == 1006 and not out[0].clean, (kind, status, out)


def test_refused_open_is_a_refused_handshake():
    channel = PollChannel(BASE)
    channel.open()
    assert channel.answered(OPEN, 403, '{"error": "origin"}') == [
        Closed(1006, "could not open an HTTP channel (HTTP 403)", False)]


def test_oversized_message_closes_with_1009():
    channel = opened()
    channel.send("x" * 20000)
    assert channel.answered(SEND, 413, "") == [Closed(1009, "message too big", True)]


def test_widget_close_tells_the_server_and_ignores_late_answers():
    channel = opened()
    assert channel.close() == [Request(CLOSE, "POST", BASE + "/abc/close")]
    assert channel.answered(POLL, 200, answer(0, [{"type": "pong"}])) == []
    never_opened = PollChannel(BASE)
    assert never_opened.close() == []


def test_a_send_refused_because_the_server_closed_waits_for_the_close_in_the_poll():
    """410: the server already closed the channel (say 1008 after a flood); its code arrives by the poll."""
    channel = opened()
    channel.send("x")
    assert channel.answered(SEND, 410, '{"error": "channel_closed"}') == []
    out = channel.answered(POLL, 200, answer(0, [], {"code": 1008, "reason": "message rate limit exceeded"}))
    assert out == [Closed(1008, "message rate limit exceeded", True)]


def test_an_open_refused_with_a_code_is_that_close():
    """A full server (1013) or another protocol version (4001) answers the open with the close itself."""
    channel = PollChannel(BASE)
    channel.open()
    out = channel.answered(OPEN, 200, json.dumps({"close": {"code": 1013, "reason": "server is full; try again later"}}))
    assert out == [Closed(1013, "server is full; try again later", True)]
    assert channel.send("x") == [] and channel.close() == []
