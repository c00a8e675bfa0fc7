"""Faults for the delivery tests, made by wrapping production objects (never by flags inside them).

``faults`` (the setting, from ``CHAT_WIDGET_FAULTS``; docs/protocol.md) names them:

- ``drop_ack_once``: the first message is stored, then its connection ends abruptly (1011) instead
  of acknowledging it;
- ``stall_ack_once``: the first message is stored and never acknowledged (the socket stays up);
- ``reply_delay=SECONDS``: the consultant thinks this long before each reply;
- ``poll_timeout=SECONDS``: the HTTP fallback holds a poll this long (not 25 s), and drops a channel
  nobody polled for twice this long (not 40 s), so the tests see expiry in seconds.
"""

import asyncio
import logging

from ..transport.socket import ChatConnection

log = logging.getLogger("chat_widget.faults")


class InjectedDrop(Exception):
    """Ends the connection as an unexpected error would (close 1011)."""


def install(app, faults):
    """Wrap the app's connection class and consultant as ``faults`` asks."""
    if "reply_delay" in faults:
        conversations = app.extensions["chat_conversations"]
        conversations.consultant = SlowConsultant(conversations.consultant, faults["reply_delay"])
    if "poll_timeout" in faults:
        channels = app.extensions["chat_channels"]
        channels.poll_timeout = channels.expiry_grace = faults["poll_timeout"]
    lose = [name for name in ("drop_ack_once", "stall_ack_once") if name in faults]
    if lose:
        app.extensions["chat_connection_class"] = faulty_connection_class(lose[0])


def faulty_connection_class(fault):
    """A ChatConnection whose first acknowledgement in this server process is lost as ``fault`` says."""
    pending = {"armed": True}

    class FaultyConnection(ChatConnection):
        async def acknowledge(self, entry):
            if not pending["armed"]:
                return await super().acknowledge(entry)
            pending["armed"] = False
            log.warning("fault injected fault=%s", fault)
            if fault == "drop_ack_once":
                raise InjectedDrop(fault)

    return FaultyConnection


class SlowConsultant:
    """The consultant, after a pause: a reply that is still being produced when the test acts."""

    def __init__(self, consultant, delay):
        self._consultant = consultant
        self._delay = delay
        self.name = consultant.name

    def __getattr__(self, name):
        return getattr(self._consultant, name)

    async def reply(self, history, lang=None):
        await asyncio.sleep(self._delay)
        async for chunk in self._consultant.reply(history, lang):
            yield chunk
