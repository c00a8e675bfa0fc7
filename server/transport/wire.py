"""Frames on the wire: strict JSON decoding of what widgets send, compact encoding of what we send.

The frames themselves are built and checked in ``protocol/frames.py`` (shared with the widget); this
module adds what only CPython's json offers: refusing NaN/Infinity and strings that cannot be
encoded back (a lone surrogate could be neither stored nor sent back).

Every ping of every open widget passes through here (thousands a second on a busy server), so the
encoder and decoder are built once, the re-encoding that finds lone surrogates runs only on text
that can hold one, and the pong is written without the encoder.
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


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)


def encode(frame):
    return _ENCODER.encode(frame)


def encode_pong(t=None):
    """``encode(frames.pong(t))`` for a ``t`` that ``decode_client_frame`` let through (an int or a
    finite float), without the encoder: a fifth of its cost, on the most frequent frame."""
    if t is None:
        return '{"type":"pong"}'
    return '{"type":"pong","t":' + (float.__repr__(t) if type(t) is float else int.__repr__(t)) + "}"


def _may_hold_a_surrogate(data):
    """Whether a string decoded from ``data`` may hold a lone surrogate: plain ASCII without ``\\u``
    escapes cannot. (Nesting that json.loads takes and json.dumps cannot, a few levels short of the
    recursion limit, needs no re-encoding to be refused: no frame nests, ``checks`` refuses it.)"""
    return not data.isascii() or "\\u" in data


def decode_client_frame(data, max_text_chars):
    """Decode and validate one widget frame; return the dict or raise FrameError."""
    if not isinstance(data, str):
        raise FrameError("binary_not_supported", "frames must be JSON text, not binary")
    try:
        frame = _DECODER.decode(data)
        if _may_hold_a_surrogate(data):
            encode(frame).encode("utf-8")
    except (ValueError, RecursionError):
        raise FrameError("invalid_json", "the frame is not valid JSON") from None
    return check_client_frame(frame, max_text_chars)
