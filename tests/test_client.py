"""Unit tests for widget/core/client.py: the widget's decisions, with a fake clock and no browser.

``Browser`` below carries out the client's actions the way widget/shell/main.py does (sockets,
named timers, storage, the view's state), so each test reads as a visitor's story.
"""

import json
import re
from pathlib import Path

import pytest

from protocol import close
from widget.core import actions as A
from widget.core import lifecycle
from widget.core.backoff import next_delay
from widget.core.client import COUNTDOWN_TIMER, FLUSH_TIMER, PROBE_TIMER, Client, Page
from widget.core.settings import Settings
from widget.core.words import Words

LIMITS = {"messages": 20, "per": 10, "burst": 10, "max_message_bytes": 16384}
LANG = Path(__file__).resolve().parent.parent / "widget" / "lang"
ENGLISH = Words(json.loads((LANG / "en.json").read_text(encoding="utf-8")))


class Browser:
    """Applies actions: open sockets, sent frames, running timers, what the view shows.

    It starts with the panel open (``opened=True``), as most stories are about a visitor chatting;
    ``opened=False`` is a page where the visitor has not opened the chat yet.
    """

    def __init__(self, settings=None, page=None, saved=None, online=True, opened=True):
        ids = iter("m%d" % n for n in range(1, 1000))
        self.client = Client(settings or {"socket_url": "/ws", "contact": {"email": "help@example.com"}},
                             page or Page("http:", "shop.test", "http://shop.test"), lambda: next(ids),
                             conditions=lambda: {"online": True}, random=lambda: 0.5)
        self.now = 0.0
        self.sockets = {}       # id -> url
        self.sent = []          # (socket id, frame)
        self.timers = {}        # name -> due time
        self.status = None
        self.reconnect = None
        self.notices = []
        self.logs = []
        self.saved = None       # the stored text, as the shell keeps it (None: nothing stored, or forgotten)
        self.saves = []         # every SaveSession's snapshot, in order (None: forget)
        self.probes = []
        self.cleared = 0
        self.unread = []        # the counts shown on the launcher, in order
        self.fresh = []         # with each count: how many of this page view's replies the host announced so far
        self.announced = []     # what the live region said
        self.actions = []
        self.do(self.client.start(self.now, online, saved, opened))

    def do(self, actions):
        handlers = {
            A.OpenSocket: lambda a: self.sockets.__setitem__(a.socket_id, a.url),
            A.CloseSocket: lambda a: self.sockets.pop(a.socket_id),
            A.Send: lambda a: self.sent.append((a.socket_id, a.frame)),
            A.StartTimer: lambda a: self.timers.__setitem__(a.name, self.now + a.delay),
            A.CancelTimer: lambda a: self.timers.pop(a.name),
            A.ShowStatus: lambda a: setattr(self, "status", a),
            A.ShowReconnect: lambda a: setattr(self, "reconnect", a),
            A.HideReconnect: lambda a: setattr(self, "reconnect", None),
            A.OfferRetry: lambda a: setattr(self, "reconnect", "retry"),
            A.ShowNotice: lambda a: self.notices.append(a.key),
            A.ShowUnread: lambda a: (self.unread.append(a.count), self.fresh.append(a.fresh)),
            A.Announce: lambda a: self.announced.append(a.text),
            A.Log: lambda a: self.logs.append((a.level, a.text)),
            A.SaveSession: self.store,
            A.ProbeServer: lambda a: self.probes.append(a.url),
            A.ClearInput: lambda a: setattr(self, "cleared", self.cleared + 1),
            A.ShowMessages: lambda a: None, A.RemoveMessages: lambda a: None, A.ShowTyping: lambda a: None,
        }
        for action in actions:
            self.actions.append(action)
            handlers[type(action)](action)
        return actions

    def store(self, action):
        # As widget/shell/main.py and boot.js: the snapshot as JSON, or "" to forget (the item is removed).
        self.saves.append(action.snapshot)
        self.saved = None if action.snapshot is None else json.dumps(action.snapshot)

    # ---- events ---------------------------------------------------------------------------------
    def at(self, now):
        self.now = now
        return self

    def advance(self, seconds):
        """Let time pass, firing due timers in order."""
        end = self.now + seconds
        while True:
            due = sorted((when, name) for name, when in self.timers.items() if when <= end)
            if not due:
                break
            when, name = due[0]
            self.now = max(self.now, when)
            del self.timers[name]
            self.do(self.client.timer_fired(self.now, name))
        self.now = end

    def live_for(self, seconds):
        """Let time pass on a healthy connection: the server answers every second (a pong)."""
        for _ in range(int(seconds)):
            self.advance(1)
            if self.socket in self.sockets:
                self.receive({"type": "pong"})

    @property
    def socket(self):
        return self.client.lifecycle.socket_id

    def open(self):
        return self.do(self.client.socket_opened(self.now, self.socket))

    def receive(self, frame):
        return self.do(self.client.socket_received(self.now, self.socket, json.dumps(frame)))

    def welcome(self, session="s1", resumed=False, limits=LIMITS, **extra):
        return self.receive({"type": "welcome", "v": 1, "session": session, "resumed": resumed,
                             "expired": False, "last_seq": 0, "contact": {}, "limits": limits, **extra})

    def close(self, code=1006, reason="", clean=False):
        socket = self.socket
        self.sockets.pop(socket, None)
        return self.do(self.client.socket_closed(self.now, socket, code, reason, clean))

    def type(self, text):
        return self.do(self.client.submitted(self.now, text))

    def messages_sent(self):
        return [frame for _, frame in self.sent if frame["type"] == "message"]

    def delivery(self, message_id):
        return self.client.conversation.find(message_id).delivery


def joined():
    browser = Browser()
    browser.open()
    browser.welcome()
    return browser


def test_opens_the_socket_with_the_protocol_version_and_says_hello_on_open():
    """The first attempt goes to ws://<page host>/ws?v=1; hello (with the session) is the first frame."""
    browser = Browser()
    assert browser.sockets == {1: "ws://shop.test/ws?v=1"}
    assert browser.status.state == "connecting"
    browser.open()
    assert browser.sent == [(1, {"type": "hello", "last_seq": 0})]
    assert browser.status.state == "connecting"  # open is not connected: the welcome says the chat is live
    browser.welcome()
    assert browser.status.state == "connected"


GERMAN = json.loads((LANG / "de.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("lang", ["de", "de-AT"])
def test_hello_carries_the_language_of_the_widgets_words(lang):
    """hello says the language of settings["words"] (so the consultant answers in it): on the first socket,
    on the socket after a reconnect, and on the HTTP fallback."""
    words = {**GERMAN, "lang": lang}
    browser = Browser({"socket_url": "/ws", "words": words})
    browser.open()
    assert browser.sent == [(1, {"type": "hello", "last_seq": 0, "lang": lang})]
    browser.welcome()
    browser.close(1006)
    browser.advance(browser.timers["retry"] - browser.now)
    browser.open()
    assert browser.sent[-1] == (browser.socket, {"type": "hello", "session": "s1", "last_seq": 0, "lang": lang})
    fallback = through_silent_proxy({"socket_url": "/ws", "words": words})
    fallback.open()
    assert fallback.sockets == {2: "http://shop.test/poll"}
    assert fallback.sent[-1] == (2, {"type": "hello", "last_seq": 0, "lang": lang})


@pytest.mark.parametrize("settings", [
    {"socket_url": "/ws"},
    {"socket_url": "/ws", "words": None},
    {"socket_url": "/ws", "words": {}},
    {"socket_url": "/ws", "words": {**GERMAN, "lang": ""}},
])
def test_hello_has_no_lang_without_words_that_name_one(settings):
    """Without words (or words without a lang) hello has no lang field at all: the server's main file answers."""
    browser = Browser(settings)
    browser.open()
    assert browser.sent == [(1, {"type": "hello", "last_seq": 0})]


def test_https_page_uses_wss_and_an_absolute_socket_url_is_kept():
    browser = Browser(page=Page("https:", "shop.test", "https://shop.test"))
    assert browser.sockets[1] == "wss://shop.test/ws?v=1"
    browser = Browser({"socket_url": "wss://chat.example.com/ws"}, Page("https:", "shop.test", "https://shop.test"))
    assert browser.sockets[1] == "wss://chat.example.com/ws?v=1"


def test_typed_messages_wait_until_welcome_then_go_in_order():
    """Before welcome nothing is sent (the server does not know the session yet); after it, all, in order."""
    browser = Browser()
    browser.type("first")
    browser.open()
    browser.type("second")
    assert browser.messages_sent() == []
    assert browser.delivery("m1") == browser.delivery("m2") == "queued"
    browser.welcome()
    assert [f["text"] for f in browser.messages_sent()] == ["first", "second"]
    assert browser.delivery("m2") == "sent"


def test_blank_text_is_ignored_and_the_box_is_cleared_only_when_taken():
    browser = joined()
    assert browser.type("   \n ") == []
    browser.type(" hi ")
    assert browser.cleared == 1 and browser.messages_sent()[-1]["text"] == "hi"


def test_outbox_is_paced_to_the_limits_announced_in_welcome():
    """A long outbox goes out at the server's announced rate, never tripping its limit."""
    browser = Browser()
    for n in range(8):
        browser.type("message %d" % n)
    browser.open()
    browser.welcome(limits={"messages": 1, "per": 1, "burst": 3, "max_message_bytes": 16384})
    assert len(browser.messages_sent()) == 3
    assert FLUSH_TIMER in browser.timers
    browser.advance(2.05)
    assert len(browser.messages_sent()) == 5
    browser.advance(10)
    assert len(browser.messages_sent()) == 8 and FLUSH_TIMER not in browser.timers


def test_rate_limited_message_is_requeued_and_resent_after_retry_after():
    browser = joined()
    browser.type("hello")
    browser.receive({"type": "error", "code": "rate_limited", "message": "slow down", "id": "m1", "retry_after": 2})
    assert browser.delivery("m1") == "queued"
    assert browser.timers[FLUSH_TIMER] == pytest.approx(2.01)
    browser.advance(2.1)
    assert [f["id"] for f in browser.messages_sent()] == ["m1", "m1"]


@pytest.mark.parametrize("retry_after", [-1, 9999, "soon", True, None])
def test_a_nonsense_retry_after_waits_five_seconds(retry_after):
    browser = joined()
    browser.type("hello")
    browser.receive({"type": "error", "code": "rate_limited", "message": "x", "id": "m1", "retry_after": retry_after})
    assert browser.timers[FLUSH_TIMER] == pytest.approx(5.01)


def test_connection_lost_requeues_sent_messages_and_drops_partial_replies():
    """Sent but unacknowledged goes back to queued; a reply cut off mid-stream is removed."""
    browser = joined()
    browser.type("question")
    browser.receive({"type": "reply_start", "id": "r1", "in_reply_to": "m1", "text": ""})
    browser.receive({"type": "reply_chunk", "id": "r1", "text": "Half an ans"})
    browser.close(1006)
    assert browser.delivery("m1") == "queued"
    removed = [a for a in browser.actions if isinstance(a, A.RemoveMessages)][-1]
    assert [m.id for m in removed.messages] == ["r1"]
    assert A.ShowTyping(False) in browser.actions
    browser.advance(browser.timers["retry"] - browser.now)
    browser.open()
    assert len(browser.messages_sent()) == 1  # not before welcome
    browser.welcome(resumed=True)
    assert [f["id"] for f in browser.messages_sent()] == ["m1", "m1"]


def test_ack_delivers_and_saves_the_outbox_for_a_reload():
    browser = joined()
    browser.type("hello")
    assert json.loads(browser.saved)["outbox"] == [{"id": "m1", "text": "hello"}]
    browser.receive({"type": "ack", "id": "m1", "seq": 1})
    assert browser.delivery("m1") == "delivered"
    assert json.loads(browser.saved) == {"session": "s1", "read": 0, "seq": 1, "outbox": []}


def test_a_reload_restores_the_session_and_resends_the_outbox():
    saved = json.dumps({"session": "s9", "outbox": [{"id": "old1", "text": "typed before reload"}]})
    browser = Browser(saved=saved)
    browser.open()
    assert browser.sent[0] == (1, {"type": "hello", "last_seq": 0, "session": "s9"})
    browser.welcome(session="s9", resumed=True)
    assert browser.messages_sent() == [{"type": "message", "id": "old1", "text": "typed before reload"}]


@pytest.mark.parametrize("saved", ["not json", "[1, 2]", '{"session": 5, "outbox": "x"}'])
def test_unreadable_saved_state_starts_fresh(saved):
    browser = Browser(saved=saved)
    browser.open()
    assert browser.sent == [(1, {"type": "hello", "last_seq": 0})]


def test_expired_session_is_told_to_the_visitor():
    browser = Browser(saved=json.dumps({"session": "gone", "outbox": []}))
    browser.client.conversation.last_seq = 4
    browser.open()
    browser.welcome(session="new", resumed=False)
    assert browser.notices == ["session_expired"]
    assert ENGLISH.text("session_expired") == "Your earlier conversation has expired, so this is a new one."


def test_full_outbox_tells_the_visitor_to_wait_and_keeps_the_text():
    browser = Browser()
    browser.client.conversation.max_pending = 1
    browser.type("one")
    assert browser.type("two") == [A.ShowNotice("outbox_full")]
    assert browser.cleared == 1
    assert ENGLISH.text("outbox_full").startswith("Too many messages are waiting")


def test_welcome_contacts_replace_the_page_settings_ones_in_the_alert():
    """The server's contacts (from welcome) are the ones offered when chat later fails."""
    browser = Browser()
    browser.open()
    browser.welcome(contact={"url": "https://help.test"})
    for _ in range(3):
        browser.close(1006)
        browser.advance(browser.timers["retry"] - browser.now)
    assert browser.status.alert == close.UNREACHABLE
    assert browser.status.contact == {"url": "https://help.test"}


def test_countdown_ticks_down_while_reconnecting_and_stops_when_connected():
    browser = joined()
    browser.at(100.0).close(1006)
    first = browser.reconnect
    assert first.attempt == 1 and first.seconds_left >= 1 and first.fraction == 0.0 and first.can_retry
    browser.advance(0.25)
    assert browser.reconnect.fraction > 0.0 and COUNTDOWN_TIMER in browser.timers
    browser.advance(2)  # the retry fires: attempting now
    assert browser.reconnect.seconds_left is None and not browser.reconnect.can_retry
    browser.open()
    assert browser.reconnect is not None  # open is not connected yet
    browser.welcome()
    assert browser.reconnect is None and COUNTDOWN_TIMER not in browser.timers


def test_handshake_failure_probes_ws_check_with_the_page_origin_and_explains_origin_refusal():
    browser = Browser(page=Page("https:", "shop.test:8443", "https://shop.test:8443"))
    browser.close(1006)
    assert browser.probes == ["/ws-check?origin=https%3A%2F%2Fshop.test%3A8443"]
    assert PROBE_TIMER in browser.timers
    browser.do(browser.client.probe_answered(browser.now, True, '{"allowed": false, "reason": "not listed"}'))
    assert browser.status.state == "failed" and browser.status.alert == close.ORIGIN
    assert browser.status.contact == {"email": "help@example.com"}
    assert browser.reconnect == "retry"  # stopped, but the visitor may try again
    assert PROBE_TIMER not in browser.timers


def test_a_probe_that_never_answers_counts_as_unreachable_and_a_late_answer_is_ignored():
    browser = Browser()
    browser.close(1006)
    assert PROBE_TIMER in browser.timers
    browser.advance(4.0)
    events = json.loads(browser.client.diagnostics_json(browser.now))["events"]
    assert [event["result"] for event in events if event["event"] == "probe"] == ["unreachable"]
    assert browser.client.probe_answered(browser.now, True, '{"allowed": false}') == []
    assert browser.status.state != "failed"


def test_probe_that_finds_http_working_says_the_network_blocks_live_chat():
    browser = Browser({"socket_url": "/ws", "fallback": "off"})
    for _ in range(3):
        browser.close(1006)
        if browser.probes and PROBE_TIMER in browser.timers:
            browser.do(browser.client.probe_answered(browser.now, True, '{"allowed": true, "accepting": true}'))
        browser.advance(browser.timers["retry"] - browser.now)
    assert browser.status.alert == close.INTERFERENCE


def test_upgrade_refused_while_http_works_falls_back_to_http_at_once():
    """nginx without the Upgrade headers: the handshake fails, /ws-check answers: HTTP right away."""
    browser = Browser()
    browser.close(1006)
    browser.do(browser.client.probe_answered(browser.now, True, '{"allowed": true, "accepting": true}'))
    assert browser.sockets == {2: "http://shop.test/poll"} and browser.client.fallback_reason == "refused"


@pytest.mark.parametrize("ok,text,result", [(False, "", "unreachable"), (True, "garbage", "ok"),
                                            (True, '{"draining": true}', "draining"),
                                            (True, '{"accepting": false}', "draining")])
def test_probe_answers_are_read_as_documented(ok, text, result):
    browser = Browser()
    browser.close(1006)
    browser.do(browser.client.probe_answered(browser.now, ok, text))
    events = json.loads(browser.client.diagnostics_json(browser.now))["events"]
    assert [event["result"] for event in events if event["event"] == "probe"] == [result]


def test_bad_settings_fail_at_once_naming_the_setting():
    browser = Browser({"socket_url": "http://chat.test/ws"})
    assert browser.status.state == "failed" and browser.status.alert == close.CONFIG
    assert "socket_url" in browser.status.detail
    assert browser.sockets == {}
    assert browser.reconnect is None  # retrying cannot fix a configuration error: no Retry offered


def test_starting_offline_waits_for_the_network():
    browser = Browser(online=False)
    assert browser.status.state == "offline" and browser.sockets == {}
    browser.do(browser.client.went_online(1.0))
    assert browser.sockets == {1: "ws://shop.test/ws?v=1"}


def test_retry_button_reconnects_at_once():
    browser = joined()
    browser.close(1006)
    assert browser.sockets == {}
    browser.do(browser.client.retry_pressed(browser.now))
    assert list(browser.sockets) == [2]


def test_console_repeats_are_collapsed_and_debug_lines_need_debug_mode():
    browser = joined()
    for _ in range(3):
        browser.do(browser.client.socket_received(browser.now, browser.socket, "not json"))
    browser.close(1006)
    browser.advance(browser.timers["retry"] - browser.now)  # the retry logs a debug line
    assert browser.logs.count(("warn", "chat: ignored a frame that is not JSON")) == 1
    assert ("info", "chat: ignored a frame that is not JSON (repeated 3 times)") in browser.logs
    assert not [line for line in browser.logs if line[0] == "debug"]
    debug = Browser(page=Page("http:", "shop.test", "http://shop.test", debug=True))
    debug.close(1006)
    debug.advance(5)
    assert [line for line in debug.logs if line[0] == "debug"]


def test_server_error_frames_are_logged_and_frames_for_old_sockets_ignored():
    browser = joined()
    browser.receive({"type": "error", "code": "unknown_field", "message": "bad"})
    assert ("warn", "chat: server reported unknown_field: bad") in browser.logs
    assert browser.client.socket_received(browser.now, 99, '{"type": "ack"}') == []


def test_unknown_timer_is_an_error():
    with pytest.raises(ValueError):
        Browser().client.timer_fired(0, "bogus")


def test_diagnostics_record_attempts_and_closes_without_message_texts():
    browser = joined()
    browser.type("my secret question")
    browser.at(3.0).close(1011, "internal error", True)
    report = json.loads(browser.client.diagnostics_json(browser.now))
    assert report["url"] == "ws://shop.test/ws?v=1"
    kinds = [event["event"] for event in report["events"]]
    assert kinds[:2] == ["attempt", "state"] and "close" in kinds
    closed = [event for event in report["events"] if event["event"] == "close"][0]
    assert (closed["code"], closed["reason"], closed["decision"]) == (1011, "internal error", "reconnecting")
    assert report["conditions"]["socket_protocol"] == "ws:" and report["conditions"]["online"] is True
    assert "secret" not in browser.client.diagnostics_json(browser.now)
    assert "secret" not in browser.client.diagnostics_text(browser.now)


def test_the_shell_has_a_handler_for_every_action():
    """widget/shell/main.py maps each action class to a handler; a missing one would raise in the browser."""
    shell = (Path(__file__).resolve().parent.parent / "widget" / "shell" / "main.py").read_text()
    handled = set(re.findall(r"\bA\.(\w+):", shell))
    every = {name for name, value in vars(A).items() if isinstance(value, type) and issubclass(value, A.Action)
             and value is not A.Action}
    assert handled == every - {"Render"}  # Render is the lifecycle's; the client turns it into ShowStatus


@pytest.mark.parametrize("lang", ["en", "de"])
def test_every_failure_class_has_words_for_the_visitor(lang):
    """One classification: protocol/close.py's classes are exactly the alerts a catalogue holds (offline is a state)."""
    catalogue = json.loads((LANG / (lang + ".json")).read_text(encoding="utf-8"))
    assert set(catalogue["alerts"]) == set(close.FAILURES) - {close.OFFLINE}
    words = Words(catalogue)
    for failure in catalogue["alerts"]:
        title, tips = words.alert(failure)
        assert title and tips and all(tips)


def test_every_state_and_notice_the_client_shows_has_words():
    """Each state the client can show (idle included) and each notice key reads in the catalogue."""
    for state in (lifecycle.IDLE, lifecycle.CONNECTING, lifecycle.CONNECTED, lifecycle.RECONNECTING, lifecycle.OFFLINE,
                  lifecycle.FAILED):
        assert ENGLISH.status(state)
    for key in ("session_expired", "outbox_full", "conversation_full"):
        assert ENGLISH.text(key) and Words(GERMAN).text(key)


# ---- interference on the path, the HTTP fallback, moving back, reports ----------------------------

def through_silent_proxy(settings=None):
    """A proxy that completes the upgrade and withholds the server's frames: the welcome never comes."""
    browser = Browser(settings)
    browser.open()
    browser.advance(browser.timers["connect"] - browser.now)  # the welcome timeout
    return browser


def test_open_without_welcome_never_shows_connected_and_falls_back_to_http():
    browser = through_silent_proxy()
    assert not [a for a in browser.actions if isinstance(a, A.ShowStatus) and a.state == "connected"]
    assert browser.sockets == {2: "http://shop.test/poll"}  # at once: waiting would not help
    assert A.OpenSocket(2, "http://shop.test/poll", "poll") in browser.actions
    assert browser.client.fallback_reason == "silent"
    browser.open()
    browser.welcome()
    assert browser.status.state == "connected"
    report = json.loads(browser.client.diagnostics_json(browser.now))
    assert report["transport"] == "poll" and report["fallback_reason"] == "silent"
    assert ("info", "chat: live connections are interrupted on the way (silent); using HTTP") in browser.logs


def test_after_an_outage_one_report_tells_the_server_what_failed():
    browser = through_silent_proxy()
    browser.open()
    browser.welcome()
    reports = [frame for _, frame in browser.sent if frame["type"] == "report"]
    assert reports == [{"type": "report", "attempts": 1, "transport": "poll", "reason": "silent",
                        "failures": [{"class": "interference", "code": 4100, "after": 4.0}],
                        "conditions": {"online": True, "page_protocol": "http:", "socket_protocol": "ws:"}}]
    assert "text" not in json.dumps(reports)
    browser.live_for(10)
    browser.close()  # a connection that had lasted is not a failed attempt: no report for its loss
    browser.advance(browser.timers["retry"] - browser.now)
    browser.open()
    browser.welcome()
    assert len([frame for _, frame in browser.sent if frame["type"] == "report"]) == 1


def test_no_report_when_nothing_failed():
    browser = joined()
    assert not [frame for _, frame in browser.sent if frame["type"] == "report"]


def test_fallback_off_keeps_trying_websocket_and_says_interference():
    browser = through_silent_proxy({"socket_url": "/ws", "fallback": "off"})
    for _ in range(3):
        browser.advance(browser.timers["retry"] - browser.now)
        assert list(browser.sockets.values()) == ["ws://shop.test/ws?v=1"]
        browser.open()
        browser.advance(browser.timers["connect"] - browser.now)
    assert browser.status.state == "reconnecting" and browser.status.alert == close.INTERFERENCE
    assert browser.client.fallback_reason is None


def test_fallback_always_starts_on_http():
    browser = Browser({"socket_url": "/ws", "fallback": "always"})
    assert browser.sockets == {1: "http://shop.test/poll"}
    browser.open()
    browser.welcome()
    assert "upgrade" not in browser.timers  # nothing to move back to


def on_fallback():
    browser = through_silent_proxy({"socket_url": "/ws", "upgrade_interval": 60})
    browser.open()
    browser.welcome()
    return browser


def test_on_the_fallback_websocket_is_tried_again_and_the_conversation_moves_without_loss():
    browser = on_fallback()
    browser.type("in flight")  # sent on the HTTP channel, not yet acknowledged
    assert browser.messages_sent()[-1]["text"] == "in flight"
    assert browser.timers["upgrade"] == browser.now + 60
    browser.live_for(60)
    assert browser.sockets == {2: "http://shop.test/poll", "trial-1": "ws://shop.test/ws?v=1"}
    browser.do(browser.client.socket_opened(browser.now, "trial-1"))
    assert browser.sent[-1] == ("trial-1", {"type": "hello", "session": "s1", "last_seq": 0})
    browser.do(browser.client.socket_received(browser.now, "trial-1", json.dumps(
        {"type": "welcome", "session": "s1", "resumed": True, "last_seq": 0, "limits": LIMITS})))
    assert browser.sockets == {"trial-1": "ws://shop.test/ws?v=1"}  # the HTTP channel was closed
    assert browser.socket == "trial-1" and browser.status.state == "connected"
    assert browser.sent[-1] == ("trial-1", {"type": "message", "id": "m1", "text": "in flight"})  # resent
    assert browser.client.transport == "websocket" and browser.client.fallback_reason is None
    assert "upgrade" not in browser.timers
    browser.receive({"type": "ack", "id": "m1", "seq": 1})
    assert browser.delivery("m1") == "delivered"


def test_a_failed_trial_leaves_the_fallback_working_and_tries_again_later():
    browser = on_fallback()
    browser.live_for(60)
    browser.do(browser.client.socket_opened(browser.now, "trial-1"))
    browser.live_for(8)  # no welcome on the trial either
    assert "trial-1" not in browser.sockets and browser.socket == 2 and browser.status.state == "connected"
    assert browser.timers["upgrade"] == browser.now + 60
    browser.do(browser.client.went_online(browser.now))  # a new network: try at once
    assert "trial-2" in browser.sockets


def test_back_forward_cache_closes_and_reconnects_on_return():
    browser = joined()
    browser.do(browser.client.page_frozen(browser.now))
    assert browser.sockets == {} and browser.timers == {}
    browser.do(browser.client.page_restored(browser.now + 30))
    assert browser.sockets == {2: "ws://shop.test/ws?v=1"} and browser.status.state == "connecting"
    browser.open()
    browser.welcome(resumed=True)
    assert browser.status.state == "connected"


def test_cookies_too_large_for_the_socket_move_to_http_which_sends_none():
    browser = Browser()
    browser.close(1006)
    browser.do(browser.client.probe_answered(browser.now, True, '{"allowed": true, "headers_too_large": true}'))
    assert browser.sockets == {2: "http://shop.test/poll"} and browser.client.fallback_reason == "headers"
    browser.open()
    browser.welcome()
    assert browser.status.state == "connected"


def test_cookies_too_large_with_the_fallback_off_stop_with_the_real_cause():
    browser = Browser({"socket_url": "/ws", "fallback": "off"})
    browser.close(1006)
    browser.do(browser.client.probe_answered(browser.now, True, '{"allowed": true, "headers_too_large": true}'))
    assert browser.status.state == "failed" and browser.status.alert == close.HEADERS_TOO_LARGE
    assert browser.sockets == {} and "retry" not in browser.timers


def test_after_cut_connections_the_http_fallback_is_shown_connected_at_once():
    """Probation is for the path that cut: the first connection over HTTP is shown connected at its welcome."""
    browser = Browser()
    for _ in range(2):
        browser.open()
        browser.welcome()
        browser.advance(0.2)
        browser.close(1006)
        if "retry" in browser.timers:
            browser.advance(browser.timers["retry"] - browser.now)
    assert browser.client.fallback_reason == "cut" and list(browser.sockets.values()) == ["http://shop.test/poll"]
    browser.open()
    browser.welcome()
    assert browser.status.state == "connected"


# ---- idle until opened, unread replies --------------------------------------------------------------

def reply(browser, reply_id, seq, text="An answer"):
    return browser.receive({"type": "reply", "id": reply_id, "in_reply_to": "m1", "text": text, "seq": seq})


def test_a_page_where_the_chat_is_not_opened_connects_nothing_and_stores_nothing():
    """Idle: no socket, no storage, no timers, no console lines, until the visitor opens the panel."""
    browser = Browser(opened=False)
    assert browser.status == A.ShowStatus("idle", None, {"email": "help@example.com"}, None)
    assert browser.sockets == {} and browser.timers == {} and browser.saved is None and browser.logs == []
    browser.do(browser.client.page_hidden(1.0))
    browser.do(browser.client.page_visible(2.0))
    browser.do(browser.client.went_offline(3.0))
    browser.do(browser.client.went_online(4.0))
    browser.do(browser.client.page_frozen(5.0))
    browser.do(browser.client.page_restored(6.0))
    assert not [a for a in browser.actions if isinstance(a, (A.OpenSocket, A.SaveSession, A.StartTimer))]
    assert browser.status.state == "idle"


def test_opening_the_panel_connects_and_the_session_is_stored_once_something_is_said():
    """Opening connects; the session is kept for a reload only when the visitor has said something."""
    browser = Browser(opened=False)
    browser.do(browser.client.panel_opened(browser.at(10.0).now))
    assert browser.sockets == {1: "ws://shop.test/ws?v=1"} and browser.status.state == "connecting"
    assert browser.saves == []  # nothing to keep before the server names a session
    browser.open()
    browser.welcome()
    assert browser.status.state == "connected" and browser.saved is None  # joined, but nothing said yet
    browser.type("hello")
    assert json.loads(browser.saved) == {"session": "s1", "read": 0, "seq": 0,
                                         "outbox": [{"id": "m1", "text": "hello"}]}
    browser.do(browser.client.panel_closed(browser.now))
    browser.do(browser.client.panel_opened(browser.now))
    assert list(browser.sockets) == [1]  # opening again does not connect again


def test_opening_the_panel_while_offline_waits_for_the_network():
    browser = Browser(online=False, opened=False)
    assert browser.status.state == "idle"
    browser.do(browser.client.panel_opened(1.0))
    assert browser.status.state == "offline" and browser.sockets == {}
    browser.do(browser.client.went_online(2.0))
    assert browser.sockets == {1: "ws://shop.test/ws?v=1"}


def test_a_conversation_in_progress_reconnects_at_page_load_without_opening():
    """A saved session where something was said (seq > 0: the visitor chatted on an earlier page) connects
    at once, so replies keep arriving; the hello asks for everything again (the replay fills the list)."""
    browser = Browser(saved=json.dumps({"session": "s9", "read": 0, "seq": 3, "outbox": []}), opened=False)
    assert browser.sockets == {1: "ws://shop.test/ws?v=1"} and browser.status.state == "connecting"
    browser.open()
    assert browser.sent == [(1, {"type": "hello", "last_seq": 0, "session": "s9"})]
    browser.welcome(session="s9", resumed=True)
    assert browser.status.state == "connected"


def test_replies_while_closed_are_counted_and_opening_reads_them():
    """On a later page (the visitor's message was seq 1), new replies while closed are counted and each is
    fresh (the host announces it); opening clears the count and remembers them as read."""
    browser = Browser(saved=json.dumps({"session": "s1", "read": 1, "seq": 1, "outbox": []}), opened=False)
    browser.open()
    browser.welcome(resumed=True)
    reply(browser, "r1", 2, "First")
    reply(browser, "r2", 3, "Second")
    assert browser.unread == [1, 2] and browser.fresh == [1, 2] and browser.announced == []
    reply(browser, "r2", 3, "Second")  # the same reply again (a replay): not counted twice
    assert browser.unread == [1, 2]
    browser.do(browser.client.panel_opened(browser.now))
    assert browser.unread == [1, 2, 0] and A.ShowUnread(0, 2) in browser.actions
    assert json.loads(browser.saved)["read"] == 3  # read, and remembered for a reload
    assert browser.announced == []  # the visitor reads them in the panel; nothing to announce


def test_a_streamed_reply_while_open_is_announced_once_when_complete():
    browser = joined()
    browser.type("question")
    browser.receive({"type": "reply_start", "id": "r1", "in_reply_to": "m1", "text": ""})
    browser.receive({"type": "reply_chunk", "id": "r1", "text": "Hel"})
    assert browser.announced == []
    browser.receive({"type": "reply", "id": "r1", "in_reply_to": "m1", "text": "Hello!", "seq": 2})
    assert browser.announced == ["Hello!"] and browser.unread == []
    assert json.loads(browser.saved)["read"] == 2
    browser.close(1006)  # reconnect: the replay brings r1 again
    browser.advance(browser.timers["retry"] - browser.now)
    browser.open()
    browser.welcome(resumed=True)
    reply(browser, "r1", 2, "Hello!")
    assert browser.announced == ["Hello!"]


def test_closing_the_panel_counts_the_next_replies_again():
    browser = joined()
    reply(browser, "r1", 1)
    browser.do(browser.client.panel_closed(browser.now))
    reply(browser, "r2", 2)
    assert browser.announced == ["An answer"] and browser.unread == [1]


def said_something_then_closed():
    """A visitor opened the chat, asked (seq 1), read the answer (seq 2) in the open panel, and closed it."""
    browser = Browser(opened=False)
    browser.do(browser.client.panel_opened(browser.now))
    browser.open()
    browser.welcome()
    browser.type("question")
    browser.receive({"type": "ack", "id": "m1", "seq": 1})
    reply(browser, "r1", 2)
    browser.do(browser.client.panel_closed(browser.now))
    assert browser.announced == ["An answer"] and browser.unread == []
    return browser


def reload(first):
    """The next page of the same tab: the client starts with what the first one stored, and is rejoined."""
    reloaded = Browser(saved=first.saved, opened=False)
    assert reloaded.sockets == {1: "ws://shop.test/ws?v=1"}  # a conversation in progress reconnects at load
    reloaded.open()
    assert reloaded.sent[0] == (1, {"type": "hello", "last_seq": 0, "session": "s1"})  # everything is replayed
    reloaded.welcome(resumed=True)
    reloaded.receive({"type": "message", "id": "m1", "text": "question", "seq": 1})
    return reloaded


def test_after_a_reload_replayed_replies_already_read_are_not_counted():
    """The read mark survives a reload: the replay of what the visitor saw is not new to them."""
    first = said_something_then_closed()
    reply(first, "r2", 3)  # arrives after the visitor closed the panel: unread
    assert first.unread == [1]
    reloaded = reload(first)
    reply(reloaded, "r1", 2)
    reply(reloaded, "r2", 3)
    assert reloaded.unread == [1]  # r2 only


def test_an_expired_session_counts_its_new_replies_from_the_start():
    """The new session numbers from 1 again: its replies are unread, and fresh, whatever the old marks were."""
    browser = Browser(saved=json.dumps({"session": "old", "read": 5, "seq": 5, "outbox": []}), opened=False)
    browser.open()
    browser.welcome(session="new", resumed=False)
    reply(browser, "r1", 1)
    assert browser.unread == [1] and browser.fresh == [1]


def test_visitor_entries_are_never_unread():
    """Only the consultant's replies count; the visitor's own messages (their echo or ack) do not."""
    browser = Browser(saved=json.dumps({"session": "s1", "read": 1, "seq": 1, "outbox": []}), opened=False)
    browser.open()
    browser.welcome(resumed=True)
    browser.receive({"type": "message", "id": "x1", "text": "from another tab", "seq": 2})
    assert browser.unread == [] and browser.announced == []


# ---- what is kept for the next page: only a conversation where something was said ------------------

def test_opening_and_closing_without_typing_leaves_nothing_stored_and_the_next_page_stays_idle():
    """A visitor who looked at the chat and said nothing leaves nothing behind: the only save forgets,
    and the next page of the tab neither connects nor stores anything until the chat is opened."""
    browser = Browser(opened=False)
    browser.do(browser.client.panel_opened(1.0))
    browser.open()
    browser.welcome()
    browser.live_for(5)
    browser.do(browser.client.panel_closed(browser.now))
    assert browser.saves == [None] and browser.saved is None
    for stored in (browser.saved, ""):  # removed from storage; or an empty text, read the same way
        next_page = Browser(saved=stored, opened=False)
        assert next_page.status.state == "idle" and next_page.sockets == {} and next_page.timers == {}
        assert next_page.saves == []


def test_a_saved_conversation_with_something_said_reconnects_and_one_without_does_not():
    """At page load a saved seq > 0 (or a message still waiting) reconnects; a bare session does not."""
    for snapshot in ({"session": "s9", "read": 0, "seq": 1, "outbox": []},
                     {"session": "s9", "read": 0, "seq": 0, "outbox": [{"id": "w1", "text": "waiting"}]}):
        browser = Browser(saved=json.dumps(snapshot), opened=False)
        assert browser.sockets == {1: "ws://shop.test/ws?v=1"} and browser.status.state == "connecting"
    for snapshot in ({"session": "s9", "read": 0, "seq": 0, "outbox": []}, {"session": "s9"},
                     {"session": "s9", "read": 0, "seq": "4", "outbox": []}, {"seq": 4, "outbox": []}):
        browser = Browser(saved=json.dumps(snapshot), opened=False)
        assert browser.status.state == "idle" and browser.sockets == {} and browser.timers == {}, snapshot
        assert browser.saves == []
        browser.do(browser.client.panel_opened(1.0))  # opening still joins the saved session
        browser.open()
        assert browser.sent[0][1]["type"] == "hello"


def test_an_expired_conversation_with_nothing_waiting_is_forgotten():
    """The server no longer knows the saved session: with nothing waiting there is nothing to keep, so
    storage is emptied and the next page stays idle; a message still waiting keeps the new session."""
    browser = Browser(saved=json.dumps({"session": "old", "read": 2, "seq": 2, "outbox": []}), opened=False)
    browser.open()
    browser.welcome(session="new", resumed=False)
    assert browser.saves == [None] and browser.saved is None
    assert Browser(saved=browser.saved, opened=False).status.state == "idle"
    waiting = {"session": "old", "read": 2, "seq": 2, "outbox": [{"id": "w1", "text": "still there?"}]}
    browser = Browser(saved=json.dumps(waiting), opened=False)
    browser.open()
    browser.welcome(session="new", resumed=False)
    assert browser.saves[0] == {"session": "new", "read": 0, "seq": 0, "outbox": [{"id": "w1", "text": "still there?"}]}
    assert browser.messages_sent() == [{"type": "message", "id": "w1", "text": "still there?"}]
    browser.receive({"type": "ack", "id": "w1", "seq": 1})
    assert json.loads(browser.saved) == {"session": "new", "read": 0, "seq": 1, "outbox": []}


def test_replies_replayed_after_a_reload_are_counted_but_only_newer_ones_are_fresh():
    """The host announces each reply once: those the tab had before the reload (up to the saved seq)
    come back in the replay and go on the badge, unannounced; a reply newer than that is fresh."""
    browser = Browser(saved=json.dumps({"session": "s1", "read": 1, "seq": 3, "outbox": []}), opened=False)
    browser.open()
    browser.welcome(resumed=True)
    reply(browser, "r1", 1)  # read before the reload: neither counted nor fresh
    reply(browser, "r2", 2)
    assert browser.client.conversation.snapshot()["seq"] == 3  # part-way through the replay: the number holds
    reply(browser, "r3", 3)
    assert browser.unread == [1, 2] and browser.fresh == [0, 0]
    reply(browser, "r4", 4)  # new in this page view
    assert browser.unread == [1, 2, 3] and browser.fresh == [0, 0, 1]
    browser.do(browser.client.panel_opened(browser.now))
    assert (browser.unread[-1], browser.fresh[-1]) == (0, 1)  # the host's tally holds: nothing announced again
    assert json.loads(browser.saved) == {"session": "s1", "read": 4, "seq": 4, "outbox": []}


def test_a_reply_announced_while_closed_is_not_announced_again_after_a_reload():
    """A reply that arrived while the panel was closed was announced on that page; after a reload the
    replay brings it back on the badge, but not as fresh."""
    first = said_something_then_closed()
    reply(first, "r2", 3)
    assert first.unread == [1] and first.fresh == [1]
    reloaded = reload(first)
    reply(reloaded, "r1", 2)
    reply(reloaded, "r2", 3)
    assert reloaded.unread == [1] and reloaded.fresh == [0]


def test_text_typed_before_the_first_welcome_survives_a_reload():
    """Offline (or still connecting), the visitor's typed message waits; a reload must not lose it."""
    browser = Browser(online=False, opened=False)
    browser.do(browser.client.panel_opened(1.0))
    browser.type("are you there?")
    reloaded = Browser(saved=browser.saved, opened=False)
    assert [m.text for m in reloaded.client.conversation.pending()] == ["are you there?"]


def test_a_conversation_that_expired_across_a_reload_is_told_to_the_visitor():
    """The earlier page showed a conversation; the server no longer has it: the empty list is explained."""
    browser = Browser(saved=json.dumps({"session": "old", "read": 4, "seq": 4, "outbox": []}), opened=False)
    browser.open()
    browser.welcome(session="new", resumed=False)
    assert browser.notices == ["session_expired"]


def test_a_connected_chat_writes_nothing_to_the_console():
    """Normal operation leaves the console empty; the connected line is for debug mode."""
    browser = joined()
    browser.type("hello")
    browser.receive({"type": "ack", "id": "m1", "seq": 1})
    reply(browser, "r1", 2)
    browser.live_for(5)
    assert browser.logs == []
    debug = Browser(page=Page("http:", "shop.test", "http://shop.test", debug=True))
    debug.open()
    debug.welcome()
    assert ("debug", "chat: connected") in debug.logs


def test_replies_replayed_into_an_open_panel_after_a_reload_are_not_read_out_again():
    """The panel is open at once after a reload: the replay shows the earlier replies, unread ones
    included, but only a reply new to this tab goes to the live region."""
    browser = Browser(saved=json.dumps({"session": "s1", "read": 2, "seq": 4, "outbox": []}), opened=True)
    browser.welcome(session="s1", resumed=True)
    reply(browser, "r1", 2, "earlier, read")
    reply(browser, "r2", 4, "earlier, not yet read")
    reply(browser, "r3", 6, "new")
    assert browser.announced == ["new"]


# ---- the server's budgets: a refused new conversation, a full conversation, retry_after ----------------

@pytest.mark.parametrize("code,alert", [(close.BUSY, close.STORE_BUSY), (close.LIMITED, close.ADDRESS_LIMITED)])
def test_a_refused_new_conversation_is_retried_later_and_the_visitor_told_why(code, alert):
    """The server closes right after the hello that would start a conversation (4201 busy, 4202 limited):
    the alert says why, the retry waits the slow delay, nothing is probed; what the visitor typed waits
    and goes out once a conversation starts, and the report names the class."""
    browser = Browser()
    browser.type("hello?")
    browser.open()
    browser.close(code, "", True)
    assert browser.status.state == "reconnecting" and browser.status.alert == alert
    slow = next_delay(1, Settings().backoff_base, Settings().backoff_cap, lambda: 0.5, True)
    assert browser.timers["retry"] == pytest.approx(browser.now + slow)
    assert browser.probes == [] and browser.client.lifecycle.last_failure == alert
    assert browser.delivery("m1") == "queued" and json.loads(browser.saved)["outbox"] == [{"id": "m1", "text": "hello?"}]
    browser.advance(browser.timers["retry"] - browser.now)
    assert browser.status.alert == alert  # still said while the next attempt is under way
    browser.open()
    assert browser.sent[-1] == (2, {"type": "hello", "last_seq": 0})
    browser.welcome()
    assert browser.status.state == "connected" and browser.status.alert is None
    assert browser.messages_sent() == [{"type": "message", "id": "m1", "text": "hello?"}]
    report = [frame for _, frame in browser.sent if frame["type"] == "report"][0]
    assert [(f["class"], f["code"]) for f in report["failures"]] == [(alert, code)]


def full(browser, message_id, socket=None):
    frame = {"type": "error", "code": "conversation_full", "message": "full", "id": message_id}
    return browser.do(browser.client.socket_received(browser.now, socket or browser.socket, json.dumps(frame)))


def test_a_full_conversation_starts_a_new_one_where_the_refused_messages_are_delivered():
    """conversation_full: the refused message (and the rest of its burst) waits again, a new connection opens at
    once with a hello without session (no backoff, no probe, no failure), the visitor is told, the snapshot
    forgets the full conversation; after the new welcome the messages go there in order."""
    browser = joined()
    browser.type("first")
    browser.receive({"type": "ack", "id": "m1", "seq": 1})
    reply(browser, "r1", 2)
    browser.type("second")
    browser.type("third")
    assert [f["id"] for f in browser.messages_sent()] == ["m1", "m2", "m3"]
    full(browser, "m2")
    assert A.CloseSocket(1, close.NORMAL, "conversation full") in browser.actions
    assert browser.sockets == {2: "ws://shop.test/ws?v=1"} and browser.status.state == "connecting"
    assert browser.delivery("m2") == browser.delivery("m3") == "queued"
    assert browser.notices == ["conversation_full"]
    assert "retry" not in browser.timers and browser.probes == [] and browser.client.lifecycle.attempt == 0
    assert json.loads(browser.saved) == {"session": None, "read": 0, "seq": 0, "outbox": [
        {"id": "m2", "text": "second"}, {"id": "m3", "text": "third"}]}
    assert full(browser, "m3", socket=1) == []  # the rest of the burst, on the old socket: one restart only
    assert [a.socket_id for a in browser.actions if isinstance(a, A.OpenSocket)] == [1, 2]
    browser.open()
    assert browser.sent[-1] == (2, {"type": "hello", "last_seq": 0})
    browser.welcome(session="s2", resumed=False)
    assert browser.notices == ["conversation_full"]  # asked for: not "session expired"
    assert [f["id"] for socket, f in browser.sent if socket == 2 and f["type"] == "message"] == ["m2", "m3"]
    browser.receive({"type": "ack", "id": "m2", "seq": 1})
    browser.receive({"type": "ack", "id": "m3", "seq": 2})
    assert browser.delivery("m2") == browser.delivery("m3") == "delivered"
    assert json.loads(browser.saved) == {"session": "s2", "read": 0, "seq": 2, "outbox": []}
    assert [m.id for m in browser.client.conversation.messages] == ["m1", "r1", "m2", "m3"]  # still on screen
    assert not [f for _, f in browser.sent if f["type"] == "report"]  # nothing failed
    assert ENGLISH.text("conversation_full").startswith("This conversation reached its size limit")


def test_a_full_conversation_takes_the_reply_still_streaming_before_it_starts_over():
    """The answer to an earlier question is streaming when a later message is refused as full: the new
    conversation would never replay it, so the widget waits for it (sending nothing meanwhile), then
    starts over."""
    browser = joined()
    browser.type("first")
    browser.receive({"type": "ack", "id": "m1", "seq": 1})
    browser.receive({"type": "reply_start", "id": "r1", "in_reply_to": "m1", "text": ""})
    browser.receive({"type": "reply_chunk", "id": "r1", "text": "Half an ans"})
    browser.type("second")
    full(browser, "m2")
    assert browser.notices == ["conversation_full"] and browser.sockets == {1: "ws://shop.test/ws?v=1"}
    assert browser.delivery("m2") == "queued"
    browser.advance(5)
    assert [f["id"] for f in browser.messages_sent()] == ["m1", "m2"]  # not sent again into the full one
    browser.receive({"type": "reply", "id": "r1", "in_reply_to": "m1", "text": "Half an answer, whole.", "seq": 2})
    assert A.CloseSocket(1, close.NORMAL, "conversation full") in browser.actions
    assert 2 in browser.sockets and browser.notices == ["conversation_full"]
    browser.open()
    browser.welcome(session="s2", resumed=False)
    assert browser.sent[-1] == (2, {"type": "message", "id": "m2", "text": "second"})
    assert [m.text for m in browser.client.conversation.messages if m.author == "consultant"] == ["Half an answer, whole."]


def test_a_full_conversation_waits_for_answers_not_yet_begun():
    """The error for a later message can come before an earlier question's answer has begun (answers come
    when they are done): the widget waits for it too before it starts over."""
    browser = joined()
    browser.type("first")
    browser.receive({"type": "ack", "id": "m1", "seq": 1})
    browser.type("second")
    full(browser, "m2")
    assert browser.sockets == {1: "ws://shop.test/ws?v=1"}
    reply(browser, "r1", 2)
    assert A.CloseSocket(1, close.NORMAL, "conversation full") in browser.actions and 2 in browser.sockets


def test_a_full_conversation_on_the_http_fallback_starts_a_new_one_there():
    """The same on the fallback: the HTTP channel (and a trial WebSocket, which would rejoin the full
    conversation) is closed, the new conversation starts over HTTP, and trials resume after its welcome."""
    browser = on_fallback()
    browser.type("first")
    browser.receive({"type": "ack", "id": "m1", "seq": 1})
    reply(browser, "r1", 2)
    browser.live_for(60)
    assert "trial-1" in browser.sockets
    browser.type("second")
    full(browser, "m2")
    assert browser.sockets == {3: "http://shop.test/poll"}
    assert "upgrade" not in browser.timers and "trial" not in browser.timers
    browser.open()
    assert browser.sent[-1] == (3, {"type": "hello", "last_seq": 0})
    browser.welcome(session="s2")
    assert browser.sent[-1] == (3, {"type": "message", "id": "m2", "text": "second"})
    assert browser.timers["upgrade"] == browser.now + 60


def test_a_message_refused_in_an_empty_conversation_is_not_sent_round_in_a_loop():
    """Nothing stored and yet full: a new conversation would refuse it too. No restart; it stays sent."""
    browser = joined()
    browser.type("huge")
    full(browser, "m1")
    assert browser.sockets == {1: "ws://shop.test/ws?v=1"} and browser.notices == []
    assert browser.delivery("m1") == "sent" and len(browser.messages_sent()) == 1
    assert ("warn", "chat: the server refuses a message even in an empty conversation") in browser.logs


def test_nothing_is_sent_before_retry_after_even_when_typing_or_reconnecting():
    """retry_after holds the whole outbox: a new message, and a new connection (the limit may be the
    address's), wait for it too."""
    browser = joined()
    browser.type("one")
    browser.receive({"type": "error", "code": "rate_limited", "message": "x", "id": "m1", "retry_after": 10})
    browser.advance(1)
    browser.type("two")
    assert len(browser.messages_sent()) == 1
    browser.close(1006)
    browser.advance(browser.timers["retry"] - browser.now)
    browser.open()
    browser.welcome(resumed=True)
    browser.advance(9.9 - browser.now)
    assert len(browser.messages_sent()) == 1
    browser.advance(0.2)
    assert [f["id"] for f in browser.messages_sent()] == ["m1", "m1", "m2"]


def test_a_pending_flush_does_not_resend_before_retry_after():
    """The pacer's flush timer was due sooner than retry_after: it is moved, not left to resend early."""
    browser = Browser()
    browser.open()
    browser.welcome(limits={"messages": 1, "per": 1, "burst": 1, "max_message_bytes": 16384})
    browser.type("one")
    browser.type("two")
    assert browser.timers[FLUSH_TIMER] < 1.5
    browser.receive({"type": "error", "code": "rate_limited", "message": "x", "id": "m1", "retry_after": 5})
    browser.advance(4.9)
    assert len(browser.messages_sent()) == 1
    browser.advance(0.2)
    assert [f["id"] for f in browser.messages_sent()] == ["m1", "m1"]


# ---- the server's beats ----------------------------------------------------------------------------

def pings(browser):
    return [frame for _, frame in browser.sent if frame["type"] == "ping"]


def test_a_welcome_with_heartbeat_lets_the_beats_replace_the_pings():
    """The server announces beats every 5 s: 30 s of beats and no ping; the beats never reach the view
    (no ShowMessages for them), as pongs never do."""
    browser = Browser()
    browser.open()
    browser.welcome(heartbeat={"interval": 5, "idle_timeout": 300})
    for _ in range(6):
        browser.advance(5)
        before = len(browser.actions)
        browser.receive({"type": "beat"})
        assert not [a for a in browser.actions[before:] if isinstance(a, (A.ShowMessages, A.ShowTyping))]
    assert pings(browser) == [] and browser.status.state == "connected"


@pytest.mark.parametrize("heartbeat", [None, {"interval": "5", "idle_timeout": 300}, {"interval": 5}, 7])
def test_a_welcome_without_a_usable_heartbeat_keeps_the_pings(heartbeat):
    """An older server (no field) or a malformed one: a ping every 4 s, as before."""
    browser = Browser()
    browser.open()
    browser.welcome(**({} if heartbeat is None else {"heartbeat": heartbeat}))
    browser.live_for(12)
    assert len(pings(browser)) == 3


def test_an_unknown_frame_type_is_ignored():
    """A frame type this widget does not know (a newer server's) changes nothing and keeps the socket alive."""
    browser = joined()
    browser.advance(3)
    browser.receive({"type": "something_new", "x": 1})
    assert browser.status.state == "connected" and browser.client.lifecycle._last_rx == browser.now


def test_moving_back_from_http_to_a_beating_websocket_stops_the_pinging():
    """On the HTTP fallback the widget pings every 4 s (no beats there); once the conversation moves to a
    trial WebSocket whose welcome announces beats, it no longer pings while they arrive."""
    browser = on_fallback()
    browser.live_for(60)
    browser.do(browser.client.socket_opened(browser.now, "trial-1"))
    browser.do(browser.client.socket_received(browser.now, "trial-1", json.dumps(
        {"type": "welcome", "session": "s1", "resumed": True, "last_seq": 0, "limits": LIMITS,
         "heartbeat": {"interval": 5, "idle_timeout": 300}})))
    assert browser.socket == "trial-1"
    before = len(pings(browser))
    for _ in range(6):
        browser.advance(5)
        browser.receive({"type": "beat"})
    assert len(pings(browser)) == before
