"""Widgets' failure reports: one log line each, and counts for ``/healthz``.

A widget that got through after failed attempts sends one ``report`` frame (``frames.report``,
checked by ``protocol/checks.py``): how many attempts failed, the last ones' failure class, close code
and duration, the transport it ended up on and the browser's network conditions. The server keeps
no report: it logs one line on ``chat_widget.reports`` and counts them per process, so an
administrator sees how many visitors come through something that breaks WebSockets. Never a message
text; of the session id only its first characters, enough to find the conversation's other lines but
not to resume it.
"""

import json
import logging
import re

from protocol import close

log = logging.getLogger("chat_widget.reports")

SESSION_SHOWN = 8          # characters of the session id in the log line
UNCLASSIFIED = "unclassified"  # a failure the widget could not classify (class null)
OTHER = "other"            # a class this server does not know (a newer widget): counted, keys stay bounded

_TOKEN = re.compile(r"[A-Za-z0-9_.:/+-]+")


class FailureReports:
    """Reports received by this process: in total, by failure class and by transport."""

    def __init__(self):
        self.total = 0
        self.by_class = {}      # failure class -> reports listing at least one failure of that class
        self.by_transport = {}  # "websocket" or "poll" -> reports

    def record(self, report, origin, session_id):
        """Log one line for a checked ``report`` frame and count it; returns the classes it was counted
        under (for /metrics)."""
        log.info("client report %s", describe(report, origin, session_id))
        self.total += 1
        self.by_transport[report["transport"]] = self.by_transport.get(report["transport"], 0) + 1
        classes = {counted_class(failure["class"]) for failure in report["failures"]}
        for failure_class in classes:
            self.by_class[failure_class] = self.by_class.get(failure_class, 0) + 1
        return classes


def counted_class(failure_class):
    """The key a failure class is counted under: one of close.FAILURES, ``unclassified`` or ``other``."""
    if failure_class is None:
        return UNCLASSIFIED
    return failure_class if failure_class in close.FAILURES else OTHER


def describe(report, origin, session_id):
    """``origin=… session=… attempts=3 transport=poll reason=… classes=a:2,b:1 codes=1006,4100
    conditions=online=True effectiveType=4g``: every value a token or JSON-quoted, so one line."""
    classes = {}
    for failure in report["failures"]:
        name = "none" if failure["class"] is None else failure["class"]
        classes[name] = classes.get(name, 0) + 1
    ranked = sorted(classes.items(), key=lambda item: (-item[1], item[0]))
    codes = sorted({failure["code"] for failure in report["failures"]})
    conditions = " ".join(f"{_shown(key)}={_shown(value)}" for key, value in report["conditions"].items())
    return (f"origin={_shown(origin)} session={_shown((session_id or '')[:SESSION_SHOWN])} "
            f"attempts={report['attempts']} transport={report['transport']} reason={_shown(report['reason'])} "
            f"classes={','.join(f'{_shown(name)}:{count}' for name, count in ranked)} "
            f"codes={','.join(str(code) for code in codes)} conditions={conditions}")


def _shown(value):
    """A value for the log line: as it is when it is a plain token, else JSON-quoted (never a line break)."""
    if value is None:
        return "none"
    text = value if isinstance(value, str) else repr(value)
    return text if _TOKEN.fullmatch(text) else json.dumps(text)
