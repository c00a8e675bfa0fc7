"""The chat protocol, version 1: frame validation and the frames the server sends.

Frames are JSON objects with a ``type``; docs/protocol.md is the reference. Validation is a table of
fields per client frame type, so every bad frame gets a specific, stable error code and reason.
"""

import json

VERSION = 1

# Close codes (RFC 6455 plus our application range; see docs/protocol.md).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_RESTART = 1012
CLOSE_TRY_LATER = 1013
CLOSE_UNSUPPORTED_VERSION = 4001  # terminal: the widget is newer/older than the server

MAX_ID_LENGTH = 64
MAX_SESSION_LENGTH = 64
MAX_SEQ = 2**53

# type -> {field: (python types, required)}
CLIENT_FRAMES = {
    "hello": {"session": ((str, type(None)), False), "last_seq": ((int,), False)},
    "ping": {"t": ((int, float), False)},
    "message": {"id": ((str,), True), "text": ((str,), True)},
}


class FrameError(ValueError):
    """A client frame is invalid. ``code`` is the stable machine-readable reason."""

    def __init__(self, code, message, frame_id=None):
        super().__init__(message)
        self.code = code
        self.frame_id = frame_id


def _not_json(name):
    raise ValueError(f"{name} is not JSON")


def _finite(text):
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is out of range")
    return number


def parse_client_frame(data, max_text_chars):
    """Decode and validate one client frame; return the dict or raise FrameError."""
    if not isinstance(data, str):
        raise FrameError("binary_not_supported", "frames must be JSON text, not binary")
    try:
        frame = json.loads(data, parse_constant=_not_json, parse_float=_finite)
        encode(frame).encode("utf-8")  # a lone surrogate ("\ud800") could be neither stored nor sent back
    except (ValueError, RecursionError):
        raise FrameError("invalid_json", "the frame is not valid JSON") from None
    if not isinstance(frame, dict):
        raise FrameError("invalid_frame", "a frame must be a JSON object")
    frame_type = frame.get("type")
    frame_id = frame.get("id") if isinstance(frame.get("id"), str) else None
    fields = CLIENT_FRAMES.get(frame_type) if isinstance(frame_type, str) else None
    if fields is None:
        raise FrameError("unknown_type", f"unknown frame type {str(frame_type)[:40]!r}", frame_id)
    for name in frame:
        if name != "type" and name not in fields:
            raise FrameError("unknown_field", f"unknown field {name[:40]!r} in {frame_type!r} frame", frame_id)
    for name, (types, required) in fields.items():
        if name not in frame:
            if required:
                raise FrameError("missing_field", f"{frame_type!r} frame needs field {name!r}", frame_id)
            continue
        value = frame[name]
        if not isinstance(value, types) or isinstance(value, bool):
            raise FrameError("wrong_type", f"field {name!r} has the wrong type", frame_id)
    if frame_type == "hello":
        if frame.get("session") is not None and not 1 <= len(frame["session"]) <= MAX_SESSION_LENGTH:
            raise FrameError("invalid_session", f"session id must be 1 to {MAX_SESSION_LENGTH} characters")
        if not 0 <= frame.get("last_seq", 0) <= MAX_SEQ:
            raise FrameError("invalid_seq", f"last_seq must be between 0 and {MAX_SEQ}")
    if frame_type == "message":
        if not 1 <= len(frame["id"]) <= MAX_ID_LENGTH:
            raise FrameError("invalid_id", f"message id must be 1 to {MAX_ID_LENGTH} characters", None)
        if not frame["text"].strip():
            raise FrameError("empty_text", "message text is empty", frame_id)
        if len(frame["text"]) > max_text_chars:
            raise FrameError("text_too_long", f"message text is longer than {max_text_chars} characters", frame_id)
    return frame


def encode(frame):
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def welcome(contact, session, resumed, expired, last_seq):
    """First answer to ``hello``; replayed entries after ``last_seq`` the widget had follow it."""
    return {"type": "welcome", "v": VERSION, "session": session, "resumed": resumed, "expired": expired,
            "last_seq": last_seq, "contact": contact}


def error(code, message, frame_id=None):
    frame = {"type": "error", "code": code, "message": message}
    if frame_id is not None:
        frame["id"] = frame_id
    return frame
