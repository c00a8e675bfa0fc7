"""The ping path's shortcuts answer exactly as the long way does: decoding and the pong."""

import json
import sys

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import frames
from protocol.checks import FrameError, check_client_frame
from server.transport import wire

LIMIT = 16384
MANY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Frames close to valid ones, with the values that need the re-encoding (lone surrogates, escapes,
# non-ASCII) and the ones that do not.
texts = st.text(max_size=20) | st.sampled_from(["\ud800", "a\udfffb", "\\ud800", "é", "ok", ""])
values = st.none() | st.booleans() | st.integers() | st.floats() | texts | st.lists(texts, max_size=3)
frame_dicts = st.fixed_dictionaries({"type": st.sampled_from(["ping", "message", "hello", "nope"])},
                                    optional={"id": texts, "text": texts, "t": values, "session": values})


def full_check(data):
    """What decode_client_frame did before its shortcuts: decode, always encode back, check."""
    if not isinstance(data, str):
        raise FrameError("binary_not_supported", "")
    try:
        frame = json.loads(data, parse_constant=wire._not_json, parse_float=wire._finite)
        json.dumps(frame, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (ValueError, RecursionError):
        raise FrameError("invalid_json", "") from None
    return check_client_frame(frame, LIMIT)


def answer(decode, data):
    try:
        return "frame", decode(data)
    except FrameError as error:
        return "error", error.code


def same_answer(data):
    assert answer(lambda text: wire.decode_client_frame(text, LIMIT), data) == answer(full_check, data)


@MANY
@given(frame_dicts, st.booleans())
def test_decoding_answers_as_the_full_check(frame, escaped):
    """A lone surrogate, raw (as the HTTP fallback may pass it) or escaped, is refused as before; any
    other answer is unchanged."""
    same_answer(json.dumps(frame, ensure_ascii=escaped))


@MANY
@given(st.text(max_size=200))
def test_decoding_any_text_answers_as_the_full_check(data):
    """Whatever the text, the shortcut gives the full check's frame or error code."""
    same_answer(data)


def refused_at_every_depth(opening, closing, stack):
    """Decode ``opening + nesting + closing`` for every depth near the recursion limit, ``stack`` frames
    deeper than this one (where json.loads and json.dumps part depends on the stack): FrameError only."""
    if stack:
        return refused_at_every_depth(opening, closing, stack - 1)
    limit = sys.getrecursionlimit()
    for depth in range(limit - 120, limit + 10):
        try:
            wire.decode_client_frame(opening + "[" * depth + "]" * depth + closing, LIMIT)
        except FrameError:
            pass


def test_deep_nesting_near_the_recursion_limit_gets_an_error_frame():
    """Nesting json.loads takes and json.dumps cannot is an error frame, never an internal error (1011),
    in a ping or in a report (whose size check encodes it again)."""
    report = '{"type":"report","attempts":1,"failures":[],"transport":"poll","reason":null,"conditions":{"k":'
    for opening, closing in (('{"type":"ping","t":', "}"), (report, "}}")):
        for stack in range(0, 60, 3):
            refused_at_every_depth(opening, closing, stack)


@MANY
@given(st.none() | st.integers(min_value=-(2 ** 64), max_value=2 ** 64)
       | st.floats(allow_nan=False, allow_infinity=False))
def test_pong_is_the_encoded_frame(t):
    """The pong written by hand is the encoder's pong, byte for byte, for every t a ping may carry."""
    assert wire.encode_pong(t) == wire.encode(frames.pong(t))

