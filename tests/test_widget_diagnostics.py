"""The widget's diagnostics record and its configuration check, under CPython."""

import json

from widget.core.diagnostics import Diagnostics
from widget.core.settings import check as check_settings


def test_settings_problems_name_the_setting():
    """Bad socket URLs and mixed content are configuration errors that name socket_url."""
    assert check_settings({"socket_url": "/ws"}, "https:") is None
    assert check_settings({"socket_url": "wss://chat.example.com/ws"}, "https:") is None
    for settings, protocol in [({}, "http:"), ({"socket_url": "ftp://x/ws"}, "http:"),
                               ({"socket_url": "ws://chat.example.com/ws"}, "https:"), ({"socket_url": "ws://"}, "http:")]:
        problem = check_settings(settings, protocol)
        assert problem and "socket_url" in problem
    assert "mixed content" in check_settings({"socket_url": "ws://chat.example.com/ws"}, "https:")


def test_record_is_bounded_to_the_latest_events():
    """Only the newest events are kept, oldest dropped first."""
    record = Diagnostics("0.1.0", "micropython", "ws://x/ws", limit=3)
    for n in range(5):
        record.record(float(n), "attempt", socket=n)
    assert [e["socket"] for e in record.events] == [2, 3, 4]


def test_reports_name_the_classification_and_conditions():
    """Text and JSON reports carry URL, state, classification, conditions and events."""
    record = Diagnostics("0.1.0", "pyodide", "ws://x/ws")
    record.record(1.0, "close", socket=1, code=1006, clean=False)
    conditions = {"online": True, "effectiveType": "4g"}
    text = record.report_text(2.0, "reconnecting", "interference", conditions)
    assert "ws://x/ws" in text and "classification: interference" in text and "code=1006" in text
    assert "effectiveType: 4g" in text and "proxy" in text
    report = json.loads(record.report_json(2.0, "reconnecting", "interference", conditions))
    assert report["runtime"] == "pyodide" and report["events"][0]["code"] == 1006
