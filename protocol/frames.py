"""Every frame of the chat protocol: one builder per frame type, and readers for the fields a
receiver must not trust blindly.

Frames are JSON objects with a ``type`` (docs/protocol.md is the reference, checked against this
module and ``checks.py``, which validates what widgets send). Builders return plain dicts; the
sender encodes them.
"""

VERSION = 1

# ---- widget -> server ------------------------------------------------------------------------------

def hello(session, last_seq, lang=None):
    """``lang``: the language tag of the widget's words, so the consultant answers in that language."""
    frame = {"type": "hello", "last_seq": last_seq}
    if session:
        frame["session"] = session
    if lang:
        frame["lang"] = lang
    return frame


def ping(t):
    return {"type": "ping", "t": t}


def visitor_message(message_id, text, seq=None):
    """A visitor message: sent by the widget (no seq), or replayed by the server once stored."""
    frame = {"type": "message", "id": message_id, "text": text}
    if seq is not None:
        frame["seq"] = seq
    return frame


MAX_REPORT_FAILURES = 8   # a report lists at most the last 8 failed attempts
MAX_REPORT_BYTES = 2048   # and is at most this long, encoded


def report(attempts, failures, transport, reason, conditions):
    """What failed before this connection got through, for the server's log (never message texts).

    ``attempts``: failed attempts before this one; ``failures``: the last ones as dicts
    ``{"class": failure class or None, "code": close code, "after": seconds the attempt lasted}``;
    ``transport``: "websocket" or "poll"; ``reason``: why the widget fell back to HTTP ("refused",
    "silent", "cut" or "headers") or None; ``conditions``: the browser's network conditions (short
    strings and numbers).
    """
    return {"type": "report", "attempts": attempts, "failures": failures[-MAX_REPORT_FAILURES:],
            "transport": transport, "reason": reason, "conditions": conditions}


# ---- server -> widget ------------------------------------------------------------------------------

def welcome(session, resumed, expired, last_seq, contact, limits, heartbeat=None):
    """First answer to ``hello``; the replay of entries after the widget's ``last_seq`` follows.
    ``heartbeat``: the server's beats on this connection (``heartbeat()``), None where it sends none."""
    frame = {"type": "welcome", "v": VERSION, "session": session, "resumed": resumed, "expired": expired,
             "last_seq": last_seq, "contact": contact, "limits": limits}
    if heartbeat is not None:
        frame["heartbeat"] = heartbeat
    return frame


def heartbeat(interval, idle_timeout):
    """Announced in ``welcome`` on a WebSocket: the server sends ``beat`` every ``interval`` seconds, and
    closes a socket that sent nothing for ``idle_timeout`` seconds."""
    return {"interval": interval, "idle_timeout": idle_timeout}


def beat():
    """Proof of life from the server, every ``heartbeat.interval`` seconds: the widget need not ask."""
    return {"type": "beat"}


def limits(messages, per, burst, max_message_bytes):
    """The message limits announced in ``welcome``: well-behaved widgets pace their outbox to them."""
    return {"messages": messages, "per": per, "burst": burst, "max_message_bytes": max_message_bytes}


def pong(t=None):
    return {"type": "pong"} if t is None else {"type": "pong", "t": t}


def ack(message_id, seq):
    return {"type": "ack", "id": message_id, "seq": seq}


def reply_start(reply_id, in_reply_to, text=""):
    """The consultant started answering; ``text`` is what streamed so far (for a late joiner)."""
    return {"type": "reply_start", "id": reply_id, "in_reply_to": in_reply_to, "text": text}


def reply_chunk(reply_id, text):
    return {"type": "reply_chunk", "id": reply_id, "text": text}


def reply(reply_id, in_reply_to, text, seq):
    return {"type": "reply", "id": reply_id, "in_reply_to": in_reply_to, "text": text, "seq": seq}


def error(code, message, frame_id=None, retry_after=None):
    frame = {"type": "error", "code": code, "message": message}
    if frame_id is not None:
        frame["id"] = frame_id
    if retry_after is not None:
        frame["retry_after"] = retry_after
    return frame


# ---- reading frames --------------------------------------------------------------------------------

def read_limits(frame):
    """``(messages, per, burst)`` from a ``welcome``, or None when absent or not positive integers."""
    found = frame.get("limits")
    if not isinstance(found, dict):
        return None
    values = []
    for key in ("messages", "per", "burst"):
        value = found.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            return None
        values.append(value)
    return tuple(values)


def read_heartbeat(frame):
    """``(interval, idle_timeout)`` from a ``welcome``, or None when absent or not positive numbers
    (the widget then pings as it always did)."""
    found = frame.get("heartbeat")
    if not isinstance(found, dict):
        return None
    values = []
    for key in ("interval", "idle_timeout"):
        value = found.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e6:
            return None
        values.append(value)
    return tuple(values)


def read_retry_after(frame, default=5.0, longest=600.0):
    """Seconds a ``rate_limited`` error asks to wait, clamped to a sane range."""
    value = frame.get("retry_after")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < longest:
        return default
    return value
