"""The widget's conversation model under CPython: outbox order, resend, acks, replay, dedup, streaming, storage."""

import itertools

import pytest

from protocol.ratelimit import TokenBucket as Pacer
from widget.core.chat import DELIVERED, QUEUED, SENT, Conversation, OutboxFull, Show


def new(**options):
    counter = itertools.count(1)
    return Conversation(lambda: f"m{next(counter)}", **options)


def ids(conversation):
    return [m.id for m in conversation.messages]


def test_messages_queue_until_sent_and_send_in_order():
    """Typed messages wait as queued and go out in the order typed."""
    chat = new()
    chat.compose("one")
    chat.compose("two")
    assert [m.delivery for m in chat.messages] == [QUEUED, QUEUED]
    assert [f["text"] for f in chat.frames_to_send()] == ["one", "two"]
    assert [m.delivery for m in chat.messages] == [SENT, SENT]
    assert chat.frames_to_send() == []  # nothing is sent twice on one connection


def test_unacknowledged_messages_are_resent_after_reconnect():
    """A lost connection returns sent-but-unacked messages to queued; acked ones stay delivered."""
    chat = new()
    chat.compose("one")
    chat.compose("two")
    chat.frames_to_send()
    chat.received({"type": "ack", "id": "m1", "seq": 1})
    changed = chat.connection_lost()
    assert [u.message.id for u in changed] == ["m2"]
    assert [f["id"] for f in chat.frames_to_send()] == ["m2"]


def test_ack_marks_delivered_once_and_tracks_seq():
    """An ack delivers the message and advances last_seq; a repeated ack changes nothing."""
    chat = new()
    chat.compose("one")
    chat.frames_to_send()
    assert chat.received({"type": "ack", "id": "m1", "seq": 1}) != []
    assert chat.messages[0].delivery == DELIVERED and chat.last_seq == 1
    assert chat.received({"type": "ack", "id": "m1", "seq": 1}) == []


def test_replayed_entries_are_not_shown_twice():
    """Entries at or below last_seq (already shown) are ignored when replayed again."""
    chat = new()
    chat.received({"type": "reply", "id": "r1", "in_reply_to": "x", "text": "hi", "seq": 1})
    assert chat.received({"type": "reply", "id": "r1", "in_reply_to": "x", "text": "hi", "seq": 1}) == []
    assert chat.received({"type": "message", "id": "v9", "text": "old", "seq": 1}) == []
    assert ids(chat) == ["r1"]


def test_replay_after_reload_goes_before_waiting_messages():
    """After a reload, stored history appears above the messages still waiting in the outbox."""
    chat = new()
    chat.restore({"session": "s1", "outbox": [{"id": "m7", "text": "still waiting"}]})
    chat.received({"type": "message", "id": "m5", "text": "earlier", "seq": 1})
    updates = chat.received({"type": "reply", "id": "r1", "in_reply_to": "m5", "text": "answer", "seq": 2})
    assert ids(chat) == ["m5", "r1", "m7"]
    assert updates[0].before == "m7"


def test_replayed_visitor_entry_with_outbox_id_delivers_it():
    """A message stored before a reload but never acked is recognised by id, not shown twice."""
    chat = new()
    chat.restore({"session": "s1", "outbox": [{"id": "m7", "text": "hello"}]})
    chat.received({"type": "message", "id": "m7", "text": "hello", "seq": 1})
    assert ids(chat) == ["m7"] and chat.messages[0].delivery == DELIVERED
    assert chat.pending() == []


def test_streamed_reply_is_replaced_by_the_stored_text():
    """Chunks build the reply; the final stored reply replaces it (no half-duplicated text)."""
    chat = new()
    chat.received({"type": "reply_start", "id": "r1", "in_reply_to": "m1"})
    assert chat.typing
    chat.received({"type": "reply_chunk", "id": "r1", "text": "Hel"})
    assert not chat.typing
    chat.received({"type": "reply_chunk", "id": "r1", "text": "lo"})
    assert chat.messages[0].text == "Hello" and chat.messages[0].streaming
    chat.received({"type": "reply", "id": "r1", "in_reply_to": "m1", "text": "Hello!", "seq": 2})
    assert chat.messages[0].text == "Hello!" and not chat.messages[0].streaming


def test_a_reply_started_again_starts_its_text_over():
    """Another server instance took the question over (the first died mid-reply): the same reply id starts
    again with empty text; the visitor sees one reply whose text starts over, never two, and the stored
    reply is final (a late reply_start cannot reopen it)."""
    chat = new()
    chat.received({"type": "reply_start", "id": "r1", "in_reply_to": "m1"})
    chat.received({"type": "reply_chunk", "id": "r1", "text": "Our returns pol"})
    chat.received({"type": "reply_start", "id": "r1", "in_reply_to": "m1", "text": ""})
    chat.received({"type": "reply_chunk", "id": "r1", "text": "Returns"})
    assert [(m.id, m.text) for m in chat.messages] == [("r1", "Returns")] and chat.messages[0].streaming
    chat.received({"type": "reply", "id": "r1", "in_reply_to": "m1", "text": "Returns: 30 days.", "seq": 2})
    chat.received({"type": "reply_start", "id": "r1", "in_reply_to": "m1", "text": ""})
    assert [(m.id, m.text, m.streaming) for m in chat.messages] == [("r1", "Returns: 30 days.", False)]


def test_partial_reply_is_dropped_on_disconnect_and_replay_restores_it():
    """A reply cut by a disconnect is removed; the replayed stored reply shows once."""
    chat = new()
    chat.received({"type": "reply_start", "id": "r1", "in_reply_to": "m1"})
    chat.received({"type": "reply_chunk", "id": "r1", "text": "Half"})
    assert [m.id for m in chat.abandon_streams()] == ["r1"]
    chat.received({"type": "reply", "id": "r1", "in_reply_to": "m1", "text": "Half and whole", "seq": 2})
    assert [m.text for m in chat.messages] == ["Half and whole"]


def test_a_reply_overtaken_by_a_later_ack_is_still_shown_and_a_replayed_one_is_not_doubled():
    """With several instances a reply (seq 2) comes through the shared store's bus and the ack of the next
    message (seq 3) straight from the socket's server: the reply shows although it is behind last_seq;
    the same reply replayed later shows once."""
    chat = new()
    chat.received({"type": "message", "id": "m1", "text": "first", "seq": 1})
    chat.received({"type": "message", "id": "m2", "text": "second", "seq": 3})
    chat.received({"type": "reply", "id": "r1", "in_reply_to": "m1", "text": "Too fast for the ack", "seq": 2})
    assert [m.id for m in chat.messages] == ["m1", "r1", "m2"]  # in the order of their numbers
    chat.received({"type": "reply", "id": "r1", "in_reply_to": "m1", "text": "Too fast for the ack", "seq": 2})
    assert [m.id for m in chat.messages] == ["m1", "r1", "m2"]


def test_a_reconnect_replays_from_the_oldest_question_still_without_its_answer():
    """The reply to m1 (seq 2) was streaming when the ack of m2 (seq 3) arrived, then the connection
    dropped: the hello asks for everything after m1, so the replay brings that reply."""
    chat = new()
    chat.received({"type": "message", "id": "m1", "text": "first", "seq": 1})
    chat.received({"type": "reply_start", "id": "r1", "in_reply_to": "m1"})
    chat.received({"type": "message", "id": "m2", "text": "second", "seq": 3})
    chat.abandon_streams()
    assert chat.last_seq == 3 and chat.hello_frame()["last_seq"] == 1
    chat.received({"type": "message", "id": "m2", "text": "second", "seq": 3})  # the replay: dropped
    chat.received({"type": "reply", "id": "r1", "in_reply_to": "m1", "text": "Answer one", "seq": 2})
    assert [m.id for m in chat.messages] == ["m1", "r1", "m2"] and chat.hello_frame()["last_seq"] == 3


def test_session_expiry_is_reported_once_and_resets_seq():
    """A new session replacing one we had (expired) is reported, and numbering restarts."""
    chat = new()
    assert chat.welcomed("s1", resumed=False) is False
    chat.received({"type": "reply", "id": "r1", "in_reply_to": "x", "text": "hi", "seq": 3})
    assert chat.welcomed("s1", resumed=True) is False
    assert chat.welcomed("s2", resumed=False) is True
    assert chat.last_seq == 0 and chat.hello_frame() == {"type": "hello", "last_seq": 0, "session": "s2"}


def test_outbox_is_bounded_by_count_and_bytes():
    """The outbox refuses more than its bounds so the visitor can be told to wait."""
    chat = new(max_pending=2)
    chat.compose("a")
    chat.compose("b")
    with pytest.raises(OutboxFull):
        chat.compose("c")
    chat = new(max_pending_bytes=10)
    chat.compose("12345")
    with pytest.raises(OutboxFull):
        chat.compose("123456")


def test_snapshot_round_trip_keeps_session_read_mark_seq_and_waiting_messages_only():
    """What survives a reload: the session id, how far the visitor has read, the newest entry the tab had
    (seq), and the unacknowledged messages."""
    chat = new()
    chat.welcomed("s1", resumed=False)
    chat.compose("one")
    chat.compose("two")
    chat.frames_to_send()
    chat.received({"type": "ack", "id": "m1", "seq": 1})
    chat.received({"type": "reply", "id": "r1", "in_reply_to": "m1", "text": "hi", "seq": 2})
    assert chat.mark_read() is True and chat.mark_read() is False  # moved once, then nothing new
    snapshot = chat.snapshot()
    assert snapshot == {"session": "s1", "read": 2, "seq": 2, "outbox": [{"id": "m2", "text": "two"}]}
    other = new()
    shows = other.restore(snapshot)
    assert [type(u) for u in shows] == [Show] and other.session == "s1" and other.read_seq == 2
    assert other.known_seq == 2 and other.last_seq == 0  # the hello asks for the whole replay
    assert other.in_progress and other.snapshot() == snapshot  # saved again before the replay: nothing lost
    assert other.restore("garbage") == [] and other.restore({"outbox": [{"id": 5}]}) == []


@pytest.mark.parametrize("read", ["3", True, None, 2.5, -4])
def test_a_read_mark_that_is_not_a_number_reads_as_nothing_read(read):
    chat = new()
    chat.restore({"session": "s1", "read": read, "outbox": []})
    assert chat.read_seq == 0


@pytest.mark.parametrize("seq", ["3", True, None, 2.5, -4])
def test_a_stored_seq_that_is_not_a_number_reads_as_nothing_said(seq):
    chat = new()
    chat.restore({"session": "s1", "read": 0, "seq": seq, "outbox": []})
    assert chat.known_seq == 0 and not chat.in_progress and chat.snapshot()["seq"] == 0


def test_a_conversation_is_in_progress_once_joined_and_something_was_said_or_waits():
    """Worth keeping over a reload: a session, and an entry stored or a message waiting."""
    chat = new()
    assert not chat.in_progress
    chat.welcomed("s1", resumed=False)
    assert not chat.in_progress  # joined, nothing said
    chat.compose("hello")
    assert chat.in_progress  # waiting to be sent
    chat.frames_to_send()
    chat.received({"type": "ack", "id": "m1", "seq": 1})
    assert chat.pending() == [] and chat.in_progress  # said
    later = new()
    later.restore({"session": "s1", "read": 0, "seq": 1, "outbox": []})
    assert later.in_progress  # said on an earlier page, before the replay brings it back
    bare = new()
    bare.restore({"session": "s1", "read": 0, "seq": 0, "outbox": []})
    assert not bare.in_progress  # a session where nothing was said


def test_an_expired_session_forgets_the_stored_seq_too():
    """A new session numbers from 1 again: the old page's seq says nothing about it."""
    chat = new()
    chat.restore({"session": "old", "read": 3, "seq": 5, "outbox": []})
    chat.welcomed("old", resumed=True)
    assert chat.known_seq == 5 and chat.in_progress
    chat.welcomed("new", resumed=False)
    assert chat.known_seq == 0 and chat.read_seq == 0 and not chat.in_progress
    assert chat.snapshot() == {"session": "new", "read": 0, "seq": 0, "outbox": []}


def test_the_stored_seq_is_the_newest_the_tab_has_seen():
    """Part-way through the replay the restored number holds; past it, the newest replayed entry counts."""
    chat = new()
    chat.restore({"session": "s1", "read": 1, "seq": 3, "outbox": []})
    chat.received({"type": "reply", "id": "r1", "in_reply_to": "x", "text": "a", "seq": 2})
    assert chat.snapshot()["seq"] == 3
    chat.received({"type": "reply", "id": "r2", "in_reply_to": "x", "text": "b", "seq": 4})
    assert chat.snapshot()["seq"] == 4


def test_a_new_session_starts_unread():
    """An expired session's numbering restarts, and so does the read mark (else new replies would be missed)."""
    chat = new()
    chat.restore({"session": "old", "read": 7, "outbox": []})
    chat.welcomed("old", resumed=True)
    assert chat.read_seq == 7
    chat.welcomed("new", resumed=False)
    assert chat.read_seq == 0


def test_rate_limited_message_waits_again_and_goes_next():
    """A message the server refused for rate is queued again and sent before later ones."""
    chat = new()
    chat.compose("one")
    chat.compose("two")
    assert [f["id"] for f in chat.frames_to_send(1)] == ["m1"]
    assert chat.requeue("m1")[0].message.delivery == QUEUED
    assert chat.requeue("m1") == []  # not sent: nothing to requeue
    assert [f["id"] for f in chat.frames_to_send()] == ["m1", "m2"]


def test_a_full_conversation_is_forgotten_but_stays_on_screen():
    """conversation_full: the refused message waits again, the session and its marks are forgotten (the next
    hello asks for a new conversation, and its welcome is no expiry), and what was shown stays shown."""
    chat = new()
    chat.restore({"session": "s1", "read": 4, "seq": 4, "outbox": []})
    chat.welcomed("s1", resumed=True)
    chat.received({"type": "reply", "id": "r1", "in_reply_to": "x", "text": "earlier", "seq": 5})
    chat.compose("too much")
    chat.frames_to_send()
    assert chat.requeue("m1")[0].message.delivery == QUEUED
    chat.forget_session()
    assert (chat.session, chat.last_seq, chat.read_seq, chat.known_seq) == (None, 0, 0, 0)
    assert ids(chat) == ["r1", "m1"] and chat.in_progress
    assert chat.hello_frame() == {"type": "hello", "last_seq": 0}
    assert chat.snapshot() == {"session": None, "read": 0, "seq": 0, "outbox": [{"id": "m1", "text": "too much"}]}
    assert chat.welcomed("s2", resumed=False) is False  # a new conversation we asked for: nothing expired
    assert [f["id"] for f in chat.frames_to_send()] == ["m1"]
    chat.received({"type": "ack", "id": "m1", "seq": 1})  # the new conversation numbers from 1: not a replay
    assert chat.find("m1").delivery == DELIVERED and ids(chat) == ["r1", "m1"]


def test_pacer_keeps_a_flushed_outbox_within_the_server_limit():
    """After an outage the outbox drains at the server's rate: a burst, then steady, never faster."""
    pacer = Pacer(messages=20, per=10.0, burst=10)
    sent_at = []
    now = 0.0
    while len(sent_at) < 30:
        if pacer.take(now):
            sent_at.append(now)
        else:
            now += pacer.wait(now)
    assert sent_at[:10] == [0.0] * 10
    for i in range(len(sent_at)):
        for j in range(i, len(sent_at)):
            # a token bucket's promise: between two sends, at most burst + rate x elapsed messages
            assert j - i + 1 <= 10 + 2.0 * (sent_at[j] - sent_at[i]) + 1e-9
    assert abs(sent_at[-1] - 10.0) < 0.01  # 20 more at 2 per second
