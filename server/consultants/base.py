"""What every consultant is: ``reply(history, lang)`` as an async stream of text, and the errors it may raise.

A consultant turns the conversation so far into a reply, yielded in chunks, so a streaming language
model and an offline responder plug into the conversation service the same way. A reply that fails
raises a :class:`ConsultantError` subclass; its message is written for the server log and never
contains a secret such as an API key.
"""


class Consultant:
    """Interface: ``reply(history, lang=None)`` yields the reply's text in chunks.

    ``history`` is a list of ``{"author": "visitor"|"consultant", "text": str}``, oldest first.
    ``lang`` is the language tag of the visitor's widget (``hello``'s ``lang``, e.g. ``de-AT``), or None
    when the widget did not say; a consultant answers in it when it can.
    """

    name = "base"

    async def reply(self, history, lang=None):
        raise NotImplementedError
        yield  # pragma: no cover - makes this an async generator


class ConsultantError(Exception):
    """A consultant could not produce (all of) its reply; the message says why, without secrets."""


class AuthenticationFailed(ConsultantError):
    """The model server refused the credentials (HTTP 401/403)."""


class RateLimited(ConsultantError):
    """The model server asked us to slow down (HTTP 429) for longer than we are willing to wait."""


class UpstreamError(ConsultantError):
    """The model server failed (5xx), refused the request (other 4xx), sent garbage or could not be reached."""


class ConsultantTimeout(ConsultantError):
    """The first token, or the whole reply, took longer than allowed."""


class ReplyCutOff(ConsultantError):
    """The reply stream ended before it was complete; what arrived before was already yielded."""
