"""Widgets' failure reports against the real server: one log line and a count in /healthz per valid
report, a specific error frame for every invalid one, and at most one per connection."""

import json
import urllib.request

import pytest

from live import TIMEOUT, join, log_lines, opened, receive, start
from protocol import frames


@pytest.fixture(scope="module")
def server():
    process = start()
    yield process
    process.stop()


def failure(failure_class="interference", code=1006, after=0.4):
    return {"class": failure_class, "code": code, "after": after}


def report(case, **changes):
    """A valid report whose conditions carry ``case``, a marker to find its log line; ``changes``
    replace fields (``None`` values are sent as JSON null)."""
    frame = frames.report(3, [failure(), failure(after=0.3), failure("unreachable", 4100, 5.0)], "websocket", None,
                          {"online": True, "effectiveType": "4g", "case": case})
    frame.update(changes)
    return frame


def failure_reports(server):
    with urllib.request.urlopen(server.url + "/healthz", timeout=TIMEOUT) as answer:
        return json.load(answer)["checks"]["clients:failure-reports"][0]


async def still_usable(ws):
    """A ping after the report gets its pong: the report was handled and the socket still works."""
    await ws.send(json.dumps({"type": "ping", "t": 7}))
    assert await receive(ws) == {"type": "pong", "t": 7}


async def test_a_report_is_logged_as_one_line_and_counted(server):
    """A valid report: one info line on chat_widget.reports with its summary, and /healthz counts it."""
    before = failure_reports(server)
    async with opened(server) as ws:
        welcome = await join(ws)
        await ws.send(json.dumps(report("valid-1")))
        await still_usable(ws)
    lines = log_lines(server, " case=valid-1")
    assert len(lines) == 1, lines
    assert "level=INFO logger=chat_widget.reports " in lines[0]
    assert lines[0].endswith(
        f"client report origin=https://shop.example.com session={welcome['session'][:8]} attempts=3 "
        "transport=websocket reason=none classes=interference:2,unreachable:1 codes=1006,4100 "
        "conditions=online=True effectiveType=4g case=valid-1"), lines[0]
    assert welcome["session"] not in lines[0]  # a resumable session id never reaches the log
    after = failure_reports(server)
    assert after["status"] == "pass" and after["observedUnit"] == "reports"
    assert after["observedValue"] == before["observedValue"] + 1
    for failure_class in ("interference", "unreachable"):  # reports naming the class, not failures
        assert after["byClass"][failure_class] == before["byClass"].get(failure_class, 0) + 1
    assert after["byTransport"]["websocket"] == before["byTransport"].get("websocket", 0) + 1


async def test_unknown_and_missing_classes_are_counted_under_bounded_names(server):
    """A class this server does not know counts as 'other', a null one as 'unclassified'; the log
    keeps what was sent, and a hostile string stays on one quoted line."""
    before = failure_reports(server)
    async with opened(server) as ws:
        await join(ws)
        await ws.send(json.dumps(report("odd-classes", transport="poll", reason="interference\ninjected=1",
                                        failures=[failure(None, 1006, 0), failure("quantum", 1006, 0)])))
        await still_usable(ws)
    [line] = log_lines(server, " case=odd-classes")
    assert 'reason="interference\\ninjected=1"' in line and "classes=none:1,quantum:1" in line
    assert not [entry for entry in server.output if entry.startswith("injected=1")]
    after = failure_reports(server)
    assert after["byClass"]["other"] == before["byClass"].get("other", 0) + 1
    assert after["byClass"]["unclassified"] == before["byClass"].get("unclassified", 0) + 1
    assert "quantum" not in after["byClass"]
    assert after["byTransport"]["poll"] == before["byTransport"].get("poll", 0) + 1


def conditions(case, **more):
    return {"case": case, **more}


MISSING = object()  # a field left out of the report


INVALID = [
    pytest.param({"attempts": 0}, "invalid_report", id="attempts-0"),
    pytest.param({"attempts": 10001}, "invalid_report", id="attempts-10001"),
    pytest.param({"attempts": "3"}, "wrong_type", id="attempts-string"),
    pytest.param({"attempts": True}, "wrong_type", id="attempts-bool"),
    pytest.param({"attempts": 2.5}, "wrong_type", id="attempts-float"),
    pytest.param({"failures": [failure()] * 9}, "invalid_report", id="failures-9"),
    pytest.param({"failures": {"class": None}}, "wrong_type", id="failures-object"),
    pytest.param({"failures": ["interference"]}, "invalid_report", id="failure-string"),
    pytest.param({"failures": [{"class": None, "code": 1006}]}, "invalid_report", id="failure-without-after"),
    pytest.param({"failures": [{**failure(), "text": "hi"}]}, "invalid_report", id="failure-extra-field"),
    pytest.param({"failures": [failure("c" * 33)]}, "invalid_report", id="class-33-chars"),
    pytest.param({"failures": [failure(5)]}, "invalid_report", id="class-number"),
    pytest.param({"failures": [failure(code=-1)]}, "invalid_report", id="code-negative"),
    pytest.param({"failures": [failure(code=5000)]}, "invalid_report", id="code-5000"),
    pytest.param({"failures": [failure(code="1006")]}, "invalid_report", id="code-string"),
    pytest.param({"failures": [failure(code=True)]}, "invalid_report", id="code-bool"),
    pytest.param({"failures": [failure(code=1006.5)]}, "invalid_report", id="code-float"),
    pytest.param({"failures": [failure(after=-0.1)]}, "invalid_report", id="after-negative"),
    pytest.param({"failures": [failure(after="1")]}, "invalid_report", id="after-string"),
    pytest.param({"failures": [failure(after=None)]}, "invalid_report", id="after-null"),
    pytest.param({"transport": "sse"}, "invalid_report", id="transport-unknown"),
    pytest.param({"transport": None}, "wrong_type", id="transport-null"),
    pytest.param({"reason": "r" * 33}, "invalid_report", id="reason-33-chars"),
    pytest.param({"reason": 5}, "wrong_type", id="reason-number"),
    pytest.param({"conditions": ["online"]}, "wrong_type", id="conditions-list"),
    pytest.param({"conditions": conditions("c11", **{f"k{n}": n for n in range(10)})}, "invalid_report",
                 id="conditions-11"),
    pytest.param({"conditions": conditions("long-key", **{"k" * 33: 1})}, "invalid_report", id="condition-key-33"),
    pytest.param({"conditions": conditions("long-value", ua="u" * 65)}, "invalid_report", id="condition-value-65"),
    pytest.param({"conditions": conditions("null-value", rtt=None)}, "invalid_report", id="condition-null"),
    pytest.param({"conditions": conditions("list-value", rtt=[50])}, "invalid_report", id="condition-list"),
    pytest.param({"conditions": conditions("object-value", rtt={"ms": 50})}, "invalid_report",
                 id="condition-object"),
    pytest.param({"attempts": None}, "wrong_type", id="attempts-null"),
    pytest.param({"extra": 1}, "unknown_field", id="unknown-field"),
    pytest.param({"transport": MISSING}, "missing_field", id="missing-transport"),
    # The size is checked before the entries: a flood of failures is too large, not merely too many.
    pytest.param({"failures": [failure()] * 100}, "report_too_large", id="100-failures"),
]


@pytest.mark.parametrize("changes, code", INVALID)
async def test_an_invalid_report_gets_its_error_and_is_not_logged(server, changes, code, request):
    """Each malformed report gets an error frame with its code; nothing is logged or counted, and the
    socket still works (a valid report is then accepted)."""
    case = "bad-" + request.node.callspec.id
    frame = {name: value for name, value in report(case, **changes).items() if value is not MISSING}
    before = failure_reports(server)["observedValue"]
    async with opened(server) as ws:
        await join(ws)
        await ws.send(json.dumps(frame))
        answer = await receive(ws)
        assert answer["type"] == "error" and answer["code"] == code, answer
        await still_usable(ws)
        assert failure_reports(server)["observedValue"] == before
        await ws.send(json.dumps(report(case + "-then-valid")))
        await still_usable(ws)
    assert len(log_lines(server, f" case={case}-then-valid")) == 1
    assert log_lines(server, f" case={case}", wait=False) == []  # written before the valid one, if at all


async def test_a_second_report_gets_report_limit(server):
    """One report per connection: the second gets report_limit and is neither logged nor counted."""
    async with opened(server) as ws:
        await join(ws)
        await ws.send(json.dumps(report("first")))
        await still_usable(ws)
        before = failure_reports(server)["observedValue"]
        await ws.send(json.dumps(report("second")))
        answer = await receive(ws)
        assert answer["type"] == "error" and answer["code"] == "report_limit", answer
        await still_usable(ws)
        assert failure_reports(server)["observedValue"] == before
    async with opened(server) as ws:  # a report of a later connection: the second would be logged before it
        await join(ws)
        await ws.send(json.dumps(report("later-connection")))
        await still_usable(ws)
    assert len(log_lines(server, " case=later-connection")) == 1
    assert len(log_lines(server, " case=first")) == 1 and log_lines(server, " case=second", wait=False) == []


async def test_a_report_before_hello_gets_hello_required(server):
    """A report before hello is refused with hello_required, not logged, and does not use up the
    connection's one report."""
    async with opened(server) as ws:
        await ws.send(json.dumps(report("before-hello")))
        answer = await receive(ws)
        assert answer["type"] == "error" and answer["code"] == "hello_required", answer
        await join(ws)
        await ws.send(json.dumps(report("after-hello")))
        await still_usable(ws)
    assert len(log_lines(server, " case=after-hello")) == 1
    assert log_lines(server, " case=before-hello", wait=False) == []


def encoded_size(frame):
    return len(json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def sized_report(case, size):
    """A report of exactly ``size`` bytes as compact UTF-8 JSON, every field within its own limit:
    euro signs (3 bytes each) fill classes and conditions, then one ``after`` gets the digits left."""
    frame = report(case, failures=[failure("€" * 32) for _ in range(frames.MAX_REPORT_FAILURES)])
    extra = 0
    while encoded_size(frame) + 210 < size:  # one more condition of 64 euro signs: about 200 bytes
        frame["conditions"][f"p{extra}"] = "€" * 64
        extra += 1
    frame["conditions"]["case"] = frame["conditions"].pop("case")  # last, where the log line ends
    frame["failures"][0]["after"] = 0
    frame["failures"][0]["after"] = 10 ** (size - encoded_size(frame))  # one digit more per byte
    assert encoded_size(frame) == size and len(frame["conditions"]) <= 10
    return frame


@pytest.mark.parametrize("size, code", [(frames.MAX_REPORT_BYTES, None),
                                        (frames.MAX_REPORT_BYTES + 1, "report_too_large")])
async def test_report_size_limit(server, size, code):
    """A report of 2048 bytes (compact JSON, UTF-8) is logged; one byte more gets report_too_large."""
    case = f"size-{size}"
    async with opened(server) as ws:
        await join(ws)
        await ws.send(json.dumps(sized_report(case, size)))
        if code:
            answer = await receive(ws)
            assert answer["type"] == "error" and answer["code"] == code, answer
        await still_usable(ws)
    if code:
        async with opened(server) as ws:
            await join(ws)
            await ws.send(json.dumps(report(case + "-later")))
            await still_usable(ws)
        assert len(log_lines(server, f" case={case}-later")) == 1
    assert len(log_lines(server, f" case={case}", wait=not code)) == (0 if code else 1)
