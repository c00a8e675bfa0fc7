"""The conversation as the visitor sees it: messages, their delivery state, and the outbox.

Pure Python (no js, no pyscript): runs in MicroPython, Pyodide and CPython tests alike.

A visitor message is ``queued`` until it is written to an open socket, ``sent`` until the server
acknowledges it (it is then stored), then ``delivered``. Everything not yet acknowledged is sent
again, in order, each time a connection is ready; the server deduplicates by id, so a resend never
shows or answers twice. The server numbers what it stores (``seq``); the widget remembers the last
number it has, so after a reconnect the server replays only what was missed.

Display order: stored entries by ``seq``, then the messages still waiting, in the order typed.
"""

from protocol import frames

QUEUED = "queued"
SENT = "sent"
DELIVERED = "delivered"

MAX_PENDING = 100
MAX_PENDING_BYTES = 64 * 1024


class OutboxFull(Exception):
    """Too much is waiting for the connection; the visitor is told to wait."""


class Message:
    def __init__(self, id, author, text, delivery=None, seq=None, in_reply_to=None):
        self.id = id
        self.author = author
        self.text = text
        self.delivery = delivery
        self.seq = seq
        self.in_reply_to = in_reply_to
        self.streaming = False

    def __repr__(self):
        return "Message(%r, %r, %r, %r, seq=%r)" % (self.id, self.author, self.text, self.delivery, self.seq)


class Show:
    """View update: put ``message`` (new, or moved) before the message with id ``before`` (None: at the end)."""

    def __init__(self, message, before):
        self.message = message
        self.before = before

    def __repr__(self):
        return "Show(%r, before=%r)" % (self.message.id, self.before)


class Update:
    """View update: ``message`` changed (delivery, text, or finished streaming)."""

    def __init__(self, message):
        self.message = message

    def __repr__(self):
        return "Update(%r)" % self.message.id


class Conversation:
    def __init__(self, make_id, max_pending=MAX_PENDING, max_pending_bytes=MAX_PENDING_BYTES, lang=None):
        self._make_id = make_id
        self.lang = lang  # the widget's language, sent in hello so the consultant answers in it
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.session = None
        self.last_seq = 0
        self.read_seq = 0  # the newest entry the visitor has seen with the panel open (kept over reloads)
        self.known_seq = 0  # the newest entry this tab had before a reload (the replay brings them again)
        self.messages = []     # display order
        self._by_id = {}
        self._earlier = set()  # ids of messages from conversations before forget_session (still on screen)

    # ---- visitor side ---------------------------------------------------------------------------
    def pending(self):
        """Visitor messages not yet acknowledged, oldest first."""
        return [m for m in self.messages if m.author == "visitor" and m.delivery != DELIVERED]

    def compose(self, text):
        """Accept what the visitor typed; returns the view update for the new queued message."""
        pending = self.pending()
        size = len(text.encode("utf-8"))
        for message in pending:
            size += len(message.text.encode("utf-8"))
        if len(pending) >= self.max_pending or size > self.max_pending_bytes:
            raise OutboxFull()
        message = Message(self._make_id(), "visitor", text, QUEUED)
        self._add(message)
        return Show(message, None)

    def frames_to_send(self, limit=None):
        """Frames for the queued messages (at most ``limit``), in order; marks them sent."""
        out = []
        for message in self.pending():
            if limit is not None and len(out) >= limit:
                break
            if message.delivery == QUEUED:
                message.delivery = SENT
                out.append(frames.visitor_message(message.id, message.text))
        return out

    def find(self, message_id):
        return self._by_id.get(message_id)

    def queued_count(self):
        return len([m for m in self.pending() if m.delivery == QUEUED])

    def requeue(self, message_id):
        """The server refused the message (rate limit, or a full conversation): it waits in the outbox again."""
        message = self._by_id.get(message_id)
        if message is None or message.author != "visitor" or message.delivery != SENT:
            return []
        message.delivery = QUEUED
        return [Update(message)]

    def connection_lost(self):
        """Sent but unacknowledged messages go back to queued; returns the changed ones."""
        changed = []
        for message in self.pending():
            if message.delivery == SENT:
                message.delivery = QUEUED
                changed.append(Update(message))
        return changed

    # ---- session --------------------------------------------------------------------------------
    def hello_frame(self):
        return frames.hello(self.session, self.resume_after(), self.lang)

    def resume_after(self):
        """The entry number the server replays after: ``last_seq``, or the number of the oldest stored
        question still without a complete answer here. Its answer may carry a lower number than a later
        entry already seen (with several server instances an ack can overtake a reply), or have been
        lost with the connection mid-stream: the replay brings it, and what is shown is dropped."""
        answered = set()
        for message in self.messages:
            if message.author == "consultant" and not message.streaming:
                answered.add(message.in_reply_to)
        after = self.last_seq
        for message in self.messages:
            if message.author == "visitor" and message.delivery == DELIVERED and isinstance(message.seq, int) \
                    and message.id not in answered and message.id not in self._earlier and message.seq < after:
                after = message.seq
        return after

    def forget_session(self):
        """The server's conversation is full: the next hello (without a session) starts a new one. What
        is on screen stays; the marks start again, as the new conversation numbers from 1."""
        self.session = None
        self.last_seq = 0
        self.read_seq = 0
        self.known_seq = 0
        for message in self.messages:
            if message.delivery == DELIVERED or message.author == "consultant":
                self._earlier.add(message.id)

    def welcomed(self, session, resumed):
        """The server (re)joined us to ``session``. Returns True when an earlier conversation was lost."""
        lost = self.session is not None and not resumed and (self.last_seq > 0 or self.known_seq > 0)
        if not resumed:
            self.last_seq = 0
            self.read_seq = 0
            self.known_seq = 0
        self.session = session
        return lost

    # ---- server frames --------------------------------------------------------------------------
    def received(self, frame):
        """Apply a conversation frame from the server; returns view updates."""
        kind = frame.get("type")
        seq = frame.get("seq")
        if kind == "ack":
            return self._acknowledged(str(frame.get("id")), seq)
        if kind == "message":
            return self._visitor_entry(str(frame.get("id")), str(frame.get("text", "")), seq)
        if kind == "reply_start":
            return self._reply_started(str(frame.get("id")), frame.get("in_reply_to"), str(frame.get("text", "")))
        if kind == "reply_chunk":
            return self._reply_chunk(str(frame.get("id")), str(frame.get("text", "")))
        if kind == "reply":
            return self._reply(str(frame.get("id")), frame.get("in_reply_to"), str(frame.get("text", "")), seq)
        return []

    def awaiting_answer(self):
        """A question stored in this conversation has no complete answer yet (it may be streaming, or not
        started: answers come in the order they finish)."""
        answered = set()
        for message in self.messages:
            if message.author == "consultant" and not message.streaming:
                answered.add(message.in_reply_to)
        for message in self.messages:
            if message.author == "visitor" and message.delivery == DELIVERED and message.id not in answered \
                    and message.id not in self._earlier:
                return True
        return False

    @property
    def typing(self):
        """The consultant is preparing a reply and no text has arrived yet."""
        for message in self.messages:
            if message.streaming and not message.text:
                return True
        return False

    def _seen(self, seq):
        if isinstance(seq, int):
            if seq > self.last_seq:
                self.last_seq = seq

    def _acknowledged(self, message_id, seq):
        self._seen(seq)
        message = self._by_id.get(message_id)
        if message is None or message.author != "visitor" or message.delivery == DELIVERED:
            return []
        return self._deliver(message, seq)

    def _deliver(self, message, seq):
        # Once stored it takes its place among the stored entries, before what is still waiting.
        message.delivery = DELIVERED
        message.seq = seq
        self.messages.remove(message)
        before = self._insert_stored(message)
        return [Show(message, before)]

    def _visitor_entry(self, message_id, text, seq):
        if isinstance(seq, int) and seq <= self.last_seq:
            return []
        self._seen(seq)
        known = self._by_id.get(message_id)
        if known is not None:
            return self._deliver(known, seq) if known.delivery != DELIVERED else []
        message = Message(message_id, "visitor", text, DELIVERED, seq)
        return [Show(message, self._add_stored(message))]

    def _reply_started(self, reply_id, in_reply_to, text):
        known = self._by_id.get(reply_id)
        if known is not None:
            if not known.streaming or known.text == text:
                return []
            # The same reply started again: the server that was writing it died and another took the
            # question over (docs/protocol.md). Its text starts over too.
            known.text = text
            return [Update(known)]
        message = Message(reply_id, "consultant", text, None, None, in_reply_to)
        message.streaming = True
        return [Show(message, self._add_stored(message))]

    def _reply_chunk(self, reply_id, text):
        message = self._by_id.get(reply_id)
        if message is None or not message.streaming:
            return []
        message.text += text
        return [Update(message)]

    def _reply(self, reply_id, in_reply_to, text, seq):
        message = self._by_id.get(reply_id)
        # Known by its id: a replay of what is shown. An unknown reply is shown even behind last_seq:
        # with several server instances a reply travels through the shared store's bus while the ack of
        # a later message comes straight from the socket's server, and may overtake it.
        if isinstance(seq, int) and seq <= self.last_seq and message is not None and not message.streaming:
            return []
        self._seen(seq)
        if message is not None:
            # The stored text replaces whatever streamed: no half-duplicated text after a reconnect.
            message.text = text
            message.seq = seq
            message.streaming = False
            return [Update(message)]
        message = Message(reply_id, "consultant", text, None, seq, in_reply_to)
        return [Show(message, self._add_stored(message))]

    @property
    def in_progress(self):
        """A conversation worth keeping: something was said in a session, or is waiting to be sent. (A
        visitor who opened the chat and typed nothing leaves nothing behind.)"""
        said = self.session is not None and (self.last_seq > 0 or self.known_seq > 0)
        return said or len(self.pending()) > 0  # typed before the first welcome counts too

    def mark_read(self):
        """The visitor sees everything so far. Returns True when that moved the mark."""
        if self.last_seq <= self.read_seq:
            return False
        self.read_seq = self.last_seq
        return True

    def abandon_streams(self):
        """The connection dropped mid-reply: partial replies are removed; replay brings the whole one."""
        gone = [m for m in self.messages if m.streaming]
        for message in gone:
            self.messages.remove(message)
            del self._by_id[message.id]
        return gone

    # ---- storage --------------------------------------------------------------------------------
    def snapshot(self):
        """What must survive a page reload: the session and the unacknowledged messages."""
        return {"session": self.session, "read": self.read_seq, "seq": max(self.last_seq, self.known_seq),
                "outbox": [{"id": m.id, "text": m.text} for m in self.pending()]}

    def restore(self, snapshot):
        """After a reload: rejoin the session and show the waiting messages as queued."""
        updates = []
        if not isinstance(snapshot, dict):
            return updates
        session = snapshot.get("session")
        self.session = session if isinstance(session, str) else None
        self.read_seq = _count(snapshot.get("read"))
        self.known_seq = _count(snapshot.get("seq"))
        for item in snapshot.get("outbox") or []:
            if isinstance(item, dict) and isinstance(item.get("id"), str) and isinstance(item.get("text"), str):
                if item["id"] not in self._by_id:
                    message = Message(item["id"], "visitor", item["text"], QUEUED)
                    self._add(message)
                    updates.append(Show(message, None))
        return updates

    # ---- placement ------------------------------------------------------------------------------
    def _first_waiting_index(self):
        for index in range(len(self.messages)):
            message = self.messages[index]
            if message.author == "visitor" and message.delivery != DELIVERED:
                return index
        return len(self.messages)

    def _insert_stored(self, message):
        index = self._first_waiting_index()
        if isinstance(message.seq, int):
            # Among the stored entries by number: a reply overtaken by a later entry goes before it.
            for position in range(index):
                other = self.messages[position]
                if isinstance(other.seq, int) and other.seq > message.seq and other.id not in self._earlier:
                    index = position
                    break
        self.messages.insert(index, message)
        return self.messages[index + 1].id if index + 1 < len(self.messages) else None

    def _add_stored(self, message):
        self._by_id[message.id] = message
        return self._insert_stored(message)

    def _add(self, message):
        self.messages.append(message)
        self._by_id[message.id] = message


def _count(value):
    """A stored sequence number, or 0 when it is not one."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
