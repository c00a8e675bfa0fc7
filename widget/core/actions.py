"""What the widget's core asks the browser shell to do: small action objects, compared by value.

The core (``lifecycle``, ``client``) never touches the browser; it returns lists of these, and the
shell (``widget/shell/main.py``) carries each out with one handler per class. A class the shell has
no handler for is an error there, not a silent no-op. Plain classes (no dataclasses: MicroPython).
"""


class Action:
    """Base: equality and repr by the listed fields."""
    _fields = ()

    def __eq__(self, other):
        if type(self) is not type(other):
            return False
        for name in self._fields:
            if getattr(self, name) != getattr(other, name):
                return False
        return True

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        parts = ["%s=%r" % (name, getattr(self, name)) for name in self._fields]
        return "%s(%s)" % (type(self).__name__, ", ".join(parts))


def value_class(name, fields, defaults=None):
    """Make an action (or other value) class with these fields (positional, in order; ``defaults`` for the last ones)."""
    defaults = defaults or {}

    def __init__(self, *args, **kwargs):
        if len(args) > len(fields):
            raise TypeError("%s takes %d arguments" % (name, len(fields)))
        for index in range(len(fields)):
            field = fields[index]
            if index < len(args):
                value = args[index]
            elif field in kwargs:
                value = kwargs.pop(field)
            elif field in defaults:
                value = defaults[field]
            else:
                raise TypeError("%s needs %s" % (name, field))
            setattr(self, field, value)
        if kwargs:
            raise TypeError("%s got unknown %s" % (name, ", ".join(kwargs)))

    return type(name, (Action,), {"_fields": fields, "__init__": __init__})


# ---- connection (from the lifecycle) ----------------------------------------------------------------
# Open a new connection to url; every event about it carries socket_id. transport: "websocket", or
# "poll" for the HTTP fallback (url is then the /poll base; widget/core/polling.py speaks it).
OpenSocket = value_class("OpenSocket", ("socket_id", "url", "transport"), {"url": None, "transport": "websocket"})
# Close the socket (code 1000 or 4000-4999). It is no longer current.
CloseSocket = value_class("CloseSocket", ("socket_id", "code", "reason"))
# Send frame (a dict; the shell JSON-encodes it) on the socket.
Send = value_class("Send", ("socket_id", "frame"))
# (Re)start the named one-shot timer (delay in seconds); restarting replaces the old one.
StartTimer = value_class("StartTimer", ("name", "delay"))
# Cancel the named timer (a no-op if it is not running).
CancelTimer = value_class("CancelTimer", ("name",))
# The connection status, from the lifecycle (the client turns it into ShowStatus). state: one of
# lifecycle.STATES. attempt: consecutive failed attempts so far, which while reconnecting is also the
# 1-based number of the upcoming or in-flight retry (0 after coming back online). retry_at: absolute
# time of the next attempt, for a countdown, or None. alert: None or a failure class of protocol/close.py.
Render = value_class("Render", ("state", "attempt", "retry_at", "alert"), {"attempt": 0, "retry_at": None, "alert": None})
# GET url (/ws-check) to learn why a handshake failed; the answer goes to Client.probe_answered.
ProbeServer = value_class("ProbeServer", ("url",), {"url": None})
# A console line. level: "info" | "debug" | "warn".
Log = value_class("Log", ("level", "text"))

# ---- what the visitor sees (from the client) ---------------------------------------------------------
# The state in words, and the alert for a failure class (None hides it) with the contacts.
ShowStatus = value_class("ShowStatus", ("state", "alert", "contact", "detail"))
# The countdown to the next attempt (seconds_left None: attempting now), and whether Retry can help.
ShowReconnect = value_class("ShowReconnect", ("attempt", "seconds_left", "fraction", "can_retry"))
# No attempt is scheduled: hide the countdown.
HideReconnect = value_class("HideReconnect", ())
# Chat has stopped (state failed) but trying again may help: offer the Retry button.
OfferRetry = value_class("OfferRetry", ())
# Render conversation updates (chat.Show / chat.Update).
ShowMessages = value_class("ShowMessages", ("updates",))
# Remove these messages (replies cut off mid-stream).
RemoveMessages = value_class("RemoveMessages", ("messages",))
# Show or hide "the consultant is typing".
ShowTyping = value_class("ShowTyping", ("typing",))
# A line from the widget itself in the message list: ``key`` names its words (words.py's catalogue).
ShowNotice = value_class("ShowNotice", ("key",))
# Consultant replies that arrived while the panel was closed (0: none; the launcher shows the count).
# ``fresh`` counts those that arrived during this page view (not replayed after a reload): each new one
# is announced once.
ShowUnread = value_class("ShowUnread", ("count", "fresh"))
# Say this once to screen readers: a consultant reply completed while the visitor has the panel open.
Announce = value_class("Announce", ("text",))
# The typed text was taken: empty the message box.
ClearInput = value_class("ClearInput", ())
# Keep this (session id, read mark, outbox) in the tab's storage, to survive a reload; None forgets it.
SaveSession = value_class("SaveSession", ("snapshot",))
