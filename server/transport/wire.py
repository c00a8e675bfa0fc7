"""Frames on the wire: strict JSON decoding of what widgets send, compact encoding of what we send.

The frames themselves are built and checked in ``protocol/frames.py`` (shared with the widget); this
module adds what only CPython's json offers: refusing NaN/Infinity and strings that cannot be
encoded back (a lone surrogate could be neither stored nor sent back).
"""

import json

from protocol.checks import FrameError, check_client_frame


def _not_json(name):
    raise ValueError(f"{name} is not JSON")


def _finite(text):
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"{text} is out of range")
    return number


def encode(frame):
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def decode_client_frame(data, max_text_chars):
    """Decode and validate one widget frame; return the dict or raise FrameError."""
    if not isinstance(data, str):
        raise FrameError("binary_not_supported", "frames must be JSON text, not binary")
    try:
        frame = json.loads(data, parse_constant=_not_json, parse_float=_finite)
        encode(frame).encode("utf-8")
    except (ValueError, RecursionError):
        raise FrameError("invalid_json", "the frame is not valid JSON") from None
    return check_client_frame(frame, max_text_chars)
