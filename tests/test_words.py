"""widget/core/words.py: everything the widget says comes from the visitor's catalogue (widget/lang/)."""

import json
from pathlib import Path

import pytest

from widget.core.words import Words, fill

LANG = Path(__file__).resolve().parent.parent / "widget" / "lang"


def shipped(lang):
    return Words(json.loads((LANG / f"{lang}.json").read_text(encoding="utf-8")))


def test_english_words_by_kind():
    """Each kind of word reads from its part of the catalogue."""
    words = shipped("en")
    assert words.status("connected") == "Connected" and words.status("idle") == "Chat is ready"
    title, tips = words.alert("origin")
    assert title == "This site is not allowed to use this chat server." and len(tips) == 1
    assert words.contact("email") == "Email: "
    assert words.text("send") == "Send"


def test_alert_tips_are_a_copy():
    """The view may extend the tips it was given; the catalogue stays as it was."""
    words = shipped("en")
    words.alert("unreachable")[1].append("extra")
    assert "extra" not in words.alert("unreachable")[1]


@pytest.mark.parametrize("lang,now,later", [
    ("en", "Reconnecting now… (attempt 2)", "Reconnecting in 7 s… (attempt 3)"),
    ("de", None, None),
])
def test_countdowns_are_filled_in(lang, now, later):
    words = shipped(lang)
    if now:
        assert words.reconnect_text(2, None) == now and words.reconnect_text(3, 7) == later
    assert "{" not in words.reconnect_text(2, None) + words.reconnect_text(3, 7)
    assert "7" in words.reconnect_text(3, 7) and "3" in words.reconnect_text(3, 7)


def test_a_site_catalogue_may_leave_a_placeholder_out():
    """A site's words need not show every number: a missing placeholder is simply not filled."""
    words = Words({"reconnect_in": "Back soon (try {attempt})", "reconnect_now": "Trying again"})
    assert words.reconnect_text(4, 9) == "Back soon (try 4)"
    assert words.reconnect_text(4, None) == "Trying again"
    assert fill("{count} of {count}", count=2) == "2 of 2"
