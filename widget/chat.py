"""The conversation as the visitor sees it: messages, their delivery state, and the send buffer.

Pure Python (no js, no pyscript): runs in MicroPython, Pyodide and CPython tests alike.
A visitor message is ``queued`` until it is written to an open socket, ``sent`` until the server
acknowledges it, then ``delivered``. Everything not yet acknowledged is sent again, in order, each
time a connection is ready, so nothing typed during an outage is lost.
"""

QUEUED = "queued"
SENT = "sent"
DELIVERED = "delivered"

MAX_PENDING = 100


class OutboxFull(Exception):
    """Too many messages are waiting for the connection; the visitor is told to wait."""


class Message:
    def __init__(self, id, author, text, delivery=None):
        self.id = id
        self.author = author
        self.text = text
        self.delivery = delivery

    def __repr__(self):
        return "Message(%r, %r, %r, %r)" % (self.id, self.author, self.text, self.delivery)


class Conversation:
    """Messages in display order and the outbox of visitor messages awaiting acknowledgement."""

    def __init__(self, make_id, max_pending=MAX_PENDING):
        self._make_id = make_id
        self.max_pending = max_pending
        self.messages = []
        self._by_id = {}

    def pending(self):
        """Visitor messages not yet acknowledged, oldest first."""
        return [m for m in self.messages if m.author == "visitor" and m.delivery != DELIVERED]

    def compose(self, text):
        """Accept what the visitor typed; returns the new message (queued)."""
        if len(self.pending()) >= self.max_pending:
            raise OutboxFull()
        message = Message(self._make_id(), "visitor", text, QUEUED)
        self._add(message)
        return message

    def frames_to_send(self):
        """Frames for every unacknowledged message, in order; marks them sent."""
        frames = []
        for message in self.pending():
            message.delivery = SENT
            frames.append({"type": "message", "id": message.id, "text": message.text})
        return frames

    def connection_lost(self):
        """Sent but unacknowledged messages go back to queued: they will be sent again."""
        changed = []
        for message in self.pending():
            if message.delivery == SENT:
                message.delivery = QUEUED
                changed.append(message)
        return changed

    def acknowledged(self, message_id):
        """The server stored the message; returns it, or None for an unknown or repeated ack."""
        message = self._by_id.get(message_id)
        if message is None or message.author != "visitor" or message.delivery == DELIVERED:
            return None
        message.delivery = DELIVERED
        return message

    def consultant_replied(self, reply_id, text):
        """A reply arrived; returns the new message, or None if it was already shown."""
        if reply_id in self._by_id:
            return None
        message = Message(reply_id, "consultant", text)
        self._add(message)
        return message

    def _add(self, message):
        self.messages.append(message)
        self._by_id[message.id] = message
