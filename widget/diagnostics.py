"""What the widget knows about its connection, for support and developers. Pure Python.

A bounded record of recent events (attempts, closes, decisions, browser conditions) and a report
in plain text (for "Copy diagnostics") or JSON (``window.chatWidgetDiagnostics()``). Message texts
are never recorded.
"""

import json

LIMIT = 50

# What each alert means, for the report (the visitor-facing words are in words.py).
CLASSES = {
    None: "no problem detected",
    "offline": "the browser is offline",
    "unreachable": "the chat server is unreachable over HTTP and WebSocket (down, DNS, firewall)",
    "blocked": "the server answers HTTP but WebSocket connections fail (proxy or firewall blocking the upgrade)",
    "origin": "the server refused this page's origin (not in its allowed origins)",
    "draining": "the server is restarting or unavailable",
    "policy": "the server closed the connection for a policy violation (1008)",
    "too_big": "a message was larger than the server accepts (1009)",
    "protocol": "the widget and server disagree on the protocol (reload needed)",
    "config": "the widget's configuration is invalid",
}


def check_settings(settings, page_protocol):
    """Return a problem naming the setting, or None. ``settings`` is the widget's settings dict."""
    url = settings.get("socket_url")
    if not isinstance(url, str) or not url:
        return "socket_url is missing"
    if url.startswith("/"):
        return None
    scheme = url.split(":", 1)[0]
    if scheme not in ("ws", "wss") or "//" not in url or len(url.split("//", 1)[1]) == 0:
        return "socket_url %r is not a ws:// or wss:// URL" % url[:80]
    if page_protocol == "https:" and scheme == "ws":
        return "socket_url uses ws:// on an https page; browsers block this mixed content: use wss://"
    return None


class Diagnostics:
    def __init__(self, version, runtime, url, limit=LIMIT):
        self.version = version
        self.runtime = runtime
        self.url = url
        self.limit = limit
        self.events = []
        self.problem = None

    def record(self, now, kind, **fields):
        event = {"t": round(now, 3), "event": kind}
        event.update(fields)
        self.events.append(event)
        if len(self.events) > self.limit:
            del self.events[0:len(self.events) - self.limit]

    def report(self, now, state, alert, conditions):
        return {
            "widget": self.version, "runtime": self.runtime, "url": self.url, "generated": round(now, 3),
            "state": state, "classification": alert, "explanation": CLASSES.get(alert, alert),
            "problem": self.problem, "conditions": conditions, "events": list(self.events),
        }

    def report_json(self, now, state, alert, conditions):
        return json.dumps(self.report(now, state, alert, conditions))

    def report_text(self, now, state, alert, conditions):
        report = self.report(now, state, alert, conditions)
        lines = ["Chat widget diagnostics",
                 "widget %s on %s" % (report["widget"], report["runtime"]),
                 "socket URL: %s" % report["url"],
                 "state: %s" % state,
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
