"""docs/protocol.md cannot drift from protocol/: frame types, fields, error and close codes are checked."""

import re
from pathlib import Path

from protocol import checks, close, frames
from server.config import FAULTS

DOC = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")


def section(title):
    start = DOC.index("## " + title)
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end > 0 else None]


def table(title):
    """{first cell: second cell} of the table rows in a section (cells without backticks)."""
    rows = {}
    for line in section(title).splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) >= 2 and not set(cells[0]) <= set("-: "):
            rows[cells[0].strip("`")] = cells[1]
    return rows


def fields(cell):
    return set(re.findall(r"`(\w+)`", cell))


def test_title_names_the_protocol_version():
    assert DOC.startswith(f"# Chat protocol, version {frames.VERSION}\n")


def test_server_frames_are_documented_with_their_fields():
    documented = table("Server → widget")
    documented.pop("type")
    assert set(documented) == set(checks.SERVER_FRAMES)
    for frame_type, names in checks.SERVER_FRAMES.items():
        assert {name.strip("[]") for name in names} <= fields(documented[frame_type]), frame_type


def test_widget_frames_are_documented_with_their_fields():
    documented = table("Widget → server")
    documented.pop("type")
    assert set(documented) == set(checks.CLIENT_FRAMES)
    for frame_type, names in checks.CLIENT_FRAMES.items():
        assert set(names) <= fields(documented[frame_type]), frame_type


def test_builders_make_the_documented_frames():
    """Each server frame builder produces exactly the fields the table lists (optional ones in brackets)."""
    built = {
        "welcome": frames.welcome("s", True, False, 3, {}, frames.limits(20, 10, 10, 16384),
                                  frames.heartbeat(5, 300)),
        "pong": frames.pong(1.5), "beat": frames.beat(), "ack": frames.ack("m1", 1), "message": frames.visitor_message("m1", "hi", 2),
        "reply_start": frames.reply_start("r1", "m1"), "reply_chunk": frames.reply_chunk("r1", "x"),
        "reply": frames.reply("r1", "m1", "x", 3), "error": frames.error("rate_limited", "slow", "m1", 2.0),
    }
    for frame_type, frame in built.items():
        assert frame["type"] == frame_type
        assert set(frame) - {"type"} == {name.strip("[]") for name in checks.SERVER_FRAMES[frame_type]}


def test_error_codes_are_the_documented_ones():
    codes = section("Error codes").split("\n", 1)[1]
    documented = set(re.findall(r"(?:^|, )`(\w+)`", codes, re.M))
    assert documented == set(checks.ERROR_CODES)


def test_close_codes_are_the_documented_ones():
    documented = {int(code) for code in re.findall(r"^\| (\d{4}) \|", section("Close codes"), re.M)}
    defined = {value for name, value in vars(close).items() if name.isupper() and isinstance(value, int)}
    assert documented == defined
    assert "4000–4099" in section("Close codes") and close.SERVER_TERMINAL == (4000, 4099)


def test_fault_names_are_documented():
    for name in FAULTS:
        assert f"`{name}" in section("Fault injection")
