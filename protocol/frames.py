"""Every frame of the chat protocol: one builder per frame type, and the check of client frames.

Frames are JSON objects with a ``type`` (docs/protocol.md is the reference, checked against this
module). Builders return plain dicts; the sender encodes them. ``check_client_frame`` validates a
decoded frame from a widget by the ``CLIENT_FRAMES`` table, so every bad frame gets a specific,
stable error code; decoding the JSON is the server's (it has stricter number and string rules).
"""

VERSION = 1

MAX_ID_LENGTH = 64
MAX_SESSION_LENGTH = 64
MAX_SEQ = 2 ** 53

_STR = (str,)
_NUMBER = (int, float)

# Widget -> server. type -> {field: (allowed python types, required)}
CLIENT_FRAMES = {
    "hello": {"session": ((str, type(None)), False), "last_seq": ((int,), False)},
    "ping": {"t": (_NUMBER, False)},
    "message": {"id": (_STR, True), "text": (_STR, True)},
}

# Server -> widget: type -> fields, for the documentation check (optional fields in brackets).
SERVER_FRAMES = {
    "welcome": ("v", "session", "resumed", "expired", "last_seq", "contact", "limits"),
    "pong": ("[t]",),
    "ack": ("id", "seq"),
    "message": ("id", "text", "seq"),
    "reply_start": ("id", "in_reply_to", "text"),
    "reply_chunk": ("id", "text"),
    "reply": ("id", "in_reply_to", "text", "seq"),
    "error": ("code", "message", "[id]", "[retry_after]"),
}

# Error codes of ``error`` frames
ERROR_CODES = (
    "binary_not_supported", "invalid_json", "invalid_frame", "unknown_type", "unknown_field",
    "missing_field", "wrong_type", "invalid_id", "empty_text", "text_too_long", "invalid_session",
    "invalid_seq", "hello_required", "already_joined", "rate_limited",
)


class FrameError(ValueError):
    """A client frame is invalid. ``code`` is one of ERROR_CODES; ``frame_id`` the frame's id if any."""

    def __init__(self, code, message, frame_id=None):
        super().__init__(message)
        self.code = code
        self.frame_id = frame_id


# ---- widget -> server ------------------------------------------------------------------------------

def hello(session, last_seq):
    frame = {"type": "hello", "last_seq": last_seq}
    if session:
        frame["session"] = session
    return frame


def ping(t):
    return {"type": "ping", "t": t}


def visitor_message(message_id, text, seq=None):
    """A visitor message: sent by the widget (no seq), or replayed by the server once stored."""
    frame = {"type": "message", "id": message_id, "text": text}
    if seq is not None:
        frame["seq"] = seq
    return frame


# ---- server -> widget ------------------------------------------------------------------------------

def welcome(session, resumed, expired, last_seq, contact, limits):
    """First answer to ``hello``; the replay of entries after the widget's ``last_seq`` follows."""
    return {"type": "welcome", "v": VERSION, "session": session, "resumed": resumed, "expired": expired,
            "last_seq": last_seq, "contact": contact, "limits": limits}


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


def read_retry_after(frame, default=5.0, longest=600.0):
    """Seconds a ``rate_limited`` error asks to wait, clamped to a sane range."""
    value = frame.get("retry_after")
    if isinstance(value, bool) or not isinstance(value, _NUMBER) or not 0 <= value < longest:
        return default
    return value


def check_client_frame(frame, max_text_chars):
    """Validate a decoded widget frame; returns it, or raises FrameError."""
    if not isinstance(frame, dict):
        raise FrameError("invalid_frame", "a frame must be a JSON object")
    frame_type = frame.get("type")
    frame_id = frame.get("id") if isinstance(frame.get("id"), str) else None
    fields = CLIENT_FRAMES.get(frame_type) if isinstance(frame_type, str) else None
    if fields is None:
        raise FrameError("unknown_type", "unknown frame type %r" % (str(frame_type)[:40],), frame_id)
    for name in frame:
        if name != "type" and name not in fields:
            raise FrameError("unknown_field", "unknown field %r in %r frame" % (str(name)[:40], frame_type), frame_id)
    for name in fields:
        types, required = fields[name]
        if name not in frame:
            if required:
                raise FrameError("missing_field", "%r frame needs field %r" % (frame_type, name), frame_id)
            continue
        value = frame[name]
        if not isinstance(value, types) or isinstance(value, bool):
            raise FrameError("wrong_type", "field %r has the wrong type" % (name,), frame_id)
    if frame_type == "hello":
        session = frame.get("session")
        if session is not None and not 1 <= len(session) <= MAX_SESSION_LENGTH:
            raise FrameError("invalid_session", "session id must be 1 to %d characters" % MAX_SESSION_LENGTH)
        if not 0 <= frame.get("last_seq", 0) <= MAX_SEQ:
            raise FrameError("invalid_seq", "last_seq must be between 0 and %d" % MAX_SEQ)
    elif frame_type == "message":
        if not 1 <= len(frame["id"]) <= MAX_ID_LENGTH:
            raise FrameError("invalid_id", "message id must be 1 to %d characters" % MAX_ID_LENGTH)
        if not frame["text"].strip():
            raise FrameError("empty_text", "message text is empty", frame_id)
        if len(frame["text"]) > max_text_chars:
            raise FrameError("text_too_long", "message text is longer than %d characters" % max_text_chars,
                             frame_id)
    return frame
