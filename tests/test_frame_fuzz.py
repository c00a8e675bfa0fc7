"""Property tests: protocol.parse_client_frame raises nothing but FrameError, whatever arrives."""

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import checks as protocol
from protocol.checks import FrameError
from server.transport.wire import decode_client_frame as parse_client_frame

LIMIT = 16384
FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30,
)
known_types = st.sampled_from(sorted(protocol.CLIENT_FRAMES))
field_names = st.sampled_from(["id", "text", "t", "session", "last_seq", "type"]) | st.text(max_size=12)


def parses_or_refuses(data):
    """Parse; a FrameError is a fine answer, any other exception fails the property. Returns the frame or None."""
    try:
        frame = parse_client_frame(data, LIMIT)
    except FrameError as error:
        assert isinstance(error.code, str) and error.code
        assert error.frame_id is None or isinstance(error.frame_id, str)
        return None
    assert isinstance(frame, dict) and frame["type"] in protocol.CLIENT_FRAMES
    return frame


@FAST
@given(st.text(max_size=300))
def test_arbitrary_text(data):
    """Any text, JSON or not, is either a valid frame or a FrameError."""
    parses_or_refuses(data)


@FAST
@given(json_values)
def test_arbitrary_json_values(value):
    """Any JSON document (NaN and infinities included, as json.dumps writes them) is a frame or a FrameError."""
    parses_or_refuses(json.dumps(value))


@FAST
@given(known_types, st.dictionaries(field_names, json_values, max_size=4))
def test_known_types_with_random_fields(frame_type, fields):
    """A known type with random fields and values never escapes as anything but FrameError."""
    frame = parses_or_refuses(json.dumps({**fields, "type": frame_type}))
    if frame is not None and frame_type == "message":
        assert 1 <= len(frame["id"]) <= protocol.MAX_ID_LENGTH and frame["text"].strip()


@FAST
@given(st.binary(max_size=300))
def test_bytes(data):
    """Binary frames are always refused with binary_not_supported."""
    try:
        parse_client_frame(data, LIMIT)
    except FrameError as error:
        assert error.code == "binary_not_supported"
    else:
        raise AssertionError("a binary frame was accepted")


@FAST
@given(st.text(max_size=300))
def test_bytes_decoded_as_text_with_surrogates(data):
    """Text with lone surrogates (what surrogateescape decoding yields) is a frame or a FrameError."""
    parses_or_refuses(data.encode("utf-8", "surrogatepass").decode("utf-8", "surrogateescape"))


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=1, max_value=60_000), st.sampled_from(["[", "{\"a\":", "[{\"b\":"]))
def test_deep_nesting(depth, opener):
    """Nesting up to 60,000 levels (more than fits a 16 KiB frame) is refused cleanly, never a RecursionError."""
    parses_or_refuses(opener * depth)
