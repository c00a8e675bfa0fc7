"""What each side may send, and the server's check of every frame a widget sends.

``check_client_frame`` validates a decoded frame by the ``CLIENT_FRAMES`` table, so every bad frame
gets a specific, stable error code (``ERROR_CODES``); decoding the JSON is the server's job
(``server/transport/wire.py``: it has stricter number and string rules). The widget never imports
this module, so it is not shipped to the browser.
"""

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
