"""What the widget knows about its connection, for support and developers. Pure Python.

A bounded record of recent events (attempts, closes, decisions, browser conditions) and a report
in plain text (for "Copy diagnostics") or JSON (``window.chatWidgetDiagnostics()``). Message texts
are never recorded.
"""

import json

from protocol import close, frames

LIMIT = 50

NO_PROBLEM = "no problem detected"


class Diagnostics:
    def __init__(self, version, runtime, url, limit=LIMIT):
        self.version = version
        self.runtime = runtime
        self.url = url
        self.limit = limit
        self.events = []
        self.problem = None
        self.transport = "websocket"   # what carries the conversation: "websocket" or "poll" (HTTP fallback)
        self.fallback_reason = None    # why the HTTP fallback is in use (interference kind), or None
        self._failures = []            # failed attempts since the last report (the last few)
        self._failed_attempts = 0

    def failed(self, failure, code, lasted):
        """An attempt failed (``failure``: its class): remembered for the next report to the server."""
        self._failed_attempts += 1
        self._failures.append({"class": failure, "code": code, "after": round(lasted, 2)})
        del self._failures[:-frames.MAX_REPORT_FAILURES]

    def take_report(self, transport, conditions):
        """The ``report`` frame for the server when attempts failed since the last one (then forget them),
        else None. Conditions are cut to what the server accepts: 10 entries, short strings."""
        if not self._failed_attempts:
            return None
        short = {}
        for key in sorted(conditions)[:10]:
            value = conditions[key]
            short[str(key)[:32]] = value if isinstance(value, (bool, int, float)) else str(value)[:64]
        frame = frames.report(self._failed_attempts, self._failures, transport, self.fallback_reason, short)
        self._failures = []
        self._failed_attempts = 0
        return frame

    def record(self, now, kind, **fields):
        event = {"t": round(now, 3), "event": kind}
        event.update(fields)
        self.events.append(event)
        if len(self.events) > self.limit:
            del self.events[0:len(self.events) - self.limit]

    def report(self, now, state, alert, conditions):
        return {
            "widget": self.version, "runtime": self.runtime, "url": self.url, "generated": round(now, 3),
            "state": state, "classification": alert, "explanation": NO_PROBLEM if alert is None else close.FAILURES.get(alert, alert),
            "problem": self.problem, "transport": self.transport, "fallback_reason": self.fallback_reason,
            "conditions": conditions, "events": list(self.events),
        }

    def report_json(self, now, state, alert, conditions):
        return json.dumps(self.report(now, state, alert, conditions))

    def report_text(self, now, state, alert, conditions):
        report = self.report(now, state, alert, conditions)
        lines = ["Chat widget diagnostics",
                 "widget %s on %s" % (report["widget"], report["runtime"]),
                 "socket URL: %s" % report["url"],
                 "state: %s" % state,
                 "transport: %s%s" % (self.transport, " (fallback: %s)" % self.fallback_reason
                                      if self.fallback_reason else ""),
                 "classification: %s (%s)" % (alert or "none", report["explanation"])]
        if self.problem:
            lines.append("problem: %s" % self.problem)
        for key in sorted(conditions):
            lines.append("%s: %s" % (key, conditions[key]))
        lines.append("recent events (time in seconds since 1970):")
        for event in self.events:
            parts = ["%s=%s" % (key, event[key]) for key in sorted(event) if key not in ("t", "event")]
            lines.append("  %.3f %s %s" % (event["t"], event["event"], " ".join(parts)))
        return "\n".join(lines)
