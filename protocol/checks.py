"""What each side may send, and the server's check of every frame a widget sends.

``check_client_frame`` validates a decoded frame by the ``CLIENT_FRAMES`` table, so every bad frame
gets a specific, stable error code (``ERROR_CODES``); decoding the JSON is the server's job
(``server/transport/wire.py``: it has stricter number and string rules). The widget never imports
this module, so it is not shipped to the browser.
"""

import json
import re

from .frames import MAX_REPORT_BYTES, MAX_REPORT_FAILURES

MAX_ID_LENGTH = 64
MAX_SESSION_LENGTH = 64
MAX_SEQ = 2 ** 53
LANG_TAG = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,4}")  # BCP 47, the forms browsers send (fullmatch)

# A ``report`` (frames.report): what failed before a connection got through, for the server's log.
MAX_REPORT_ATTEMPTS = 10_000
MAX_CLASS_LENGTH = 32       # a failure's class (close.FAILURES), and the report's reason (why the widget
                            # fell back to HTTP: refused, silent, cut or headers; not a failure class)
MAX_CLOSE_CODE = 4999
TRANSPORTS = ("websocket", "poll")
MAX_CONDITIONS = 10
MAX_CONDITION_KEY = 32
MAX_CONDITION_TEXT = 64
_FAILURE_FIELDS = {"class", "code", "after"}

_STR = (str,)
_NUMBER = (int, float)

# Widget -> server. type -> {field: (allowed python types, required)}
CLIENT_FRAMES = {
    "hello": {"session": ((str, type(None)), False), "last_seq": ((int,), False), "lang": (_STR, False)},
    "ping": {"t": (_NUMBER, False)},
    "message": {"id": (_STR, True), "text": (_STR, True)},
    "report": {"attempts": ((int,), True), "failures": ((list,), True), "transport": (_STR, True),
               "reason": ((str, type(None)), True), "conditions": ((dict,), True)},
}

# Server -> widget: type -> fields, for the documentation check (optional fields in brackets).
SERVER_FRAMES = {
    "welcome": ("v", "session", "resumed", "expired", "last_seq", "contact", "limits", "[heartbeat]"),
    "pong": ("[t]",),
    "beat": (),
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
    "invalid_seq", "invalid_lang", "hello_required", "already_joined", "rate_limited", "conversation_full", "invalid_report", "report_too_large",
    "report_limit",
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
        # "$" also matches before a final "\n", so a trailing newline is refused on its own.
        if "lang" in frame and not LANG_TAG.fullmatch(frame["lang"]):
            raise FrameError("invalid_lang", "lang must be a language tag such as en or de-AT")
    elif frame_type == "message":
        if not 1 <= len(frame["id"]) <= MAX_ID_LENGTH:
            raise FrameError("invalid_id", "message id must be 1 to %d characters" % MAX_ID_LENGTH)
        if not frame["text"].strip():
            raise FrameError("empty_text", "message text is empty", frame_id)
        if len(frame["text"]) > max_text_chars:
            raise FrameError("text_too_long", "message text is longer than %d characters" % max_text_chars,
                             frame_id)
    elif frame_type == "report":
        _check_report(frame)
    return frame


def _check_report(frame):
    """The nested fields of a ``report`` (its top-level types are checked by the table)."""
    try:
        size = len(json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    except RecursionError:  # json.loads took it, a few levels short of the limit, and json.dumps cannot
        _invalid_report("a report does not nest this deep")
    if size > MAX_REPORT_BYTES:
        raise FrameError("report_too_large", "a report is at most %d bytes as compact JSON" % MAX_REPORT_BYTES)
    if not 1 <= frame["attempts"] <= MAX_REPORT_ATTEMPTS:
        _invalid_report("attempts must be 1 to %d" % MAX_REPORT_ATTEMPTS)
    if len(frame["failures"]) > MAX_REPORT_FAILURES:
        _invalid_report("failures lists at most %d attempts" % MAX_REPORT_FAILURES)
    for failure in frame["failures"]:
        if not isinstance(failure, dict) or set(failure) != _FAILURE_FIELDS:
            _invalid_report("each failure is an object with exactly class, code and after")
        if not _short_text(failure["class"], MAX_CLASS_LENGTH, none=True):
            _invalid_report("failure class must be null or a string of at most %d characters" % MAX_CLASS_LENGTH)
        if not _number(failure["code"], whole=True) or not 0 <= failure["code"] <= MAX_CLOSE_CODE:
            _invalid_report("failure code must be an integer from 0 to %d" % MAX_CLOSE_CODE)
        if not _number(failure["after"]) or failure["after"] < 0:
            _invalid_report("failure after must be a number of seconds, at least 0")
    if frame["transport"] not in TRANSPORTS:
        _invalid_report("transport must be one of %s" % ", ".join(TRANSPORTS))
    if not _short_text(frame["reason"], MAX_CLASS_LENGTH, none=True):
        _invalid_report("reason must be null or a string of at most %d characters" % MAX_CLASS_LENGTH)
    conditions = frame["conditions"]
    if len(conditions) > MAX_CONDITIONS:
        _invalid_report("conditions has at most %d entries" % MAX_CONDITIONS)
    for key, value in conditions.items():
        if not _short_text(key, MAX_CONDITION_KEY):
            _invalid_report("a condition's name is at most %d characters" % MAX_CONDITION_KEY)
        if not (isinstance(value, bool) or _number(value) or _short_text(value, MAX_CONDITION_TEXT)):
            _invalid_report("condition %r must be a boolean, a number or a string of at most %d characters"
                            % (key[:MAX_CONDITION_KEY], MAX_CONDITION_TEXT))


def _invalid_report(why):
    raise FrameError("invalid_report", why)


def _short_text(value, longest, none=False):
    return (none and value is None) or (isinstance(value, str) and len(value) <= longest)


def _number(value, whole=False):
    return isinstance(value, (int,) if whole else _NUMBER) and not isinstance(value, bool)
