"""The widget's settings: the lifecycle's tunables, and the page's settings checked before start.

The page's settings come from the server (the ``chat-widget-settings`` JSON in the page): where the
socket is (``socket_url``), where to ask why it fails (``check_url``), whom to offer when chat
cannot connect (``contact``), and the widget's version. ``check`` finds a problem that would stop
chat, naming the setting; ``socket_url`` and ``check_url`` resolve them against the page.
"""

from protocol import frames


class Settings:
    """Tunables, in seconds unless noted.

    connect_timeout  give up on a handshake after this long (close 4100).
    welcome_timeout  after the socket opens, the server's welcome must arrive
                     within this, or the attempt failed (close 4100): a proxy
                     that withholds the server's frames.
    probation        after a connection was cut soon after its welcome, the
                     next one is shown "Connected" only after living this long.
    backoff_base     ceiling of the first retry delay (full jitter below it).
    backoff_cap      largest ceiling of a normal retry delay; 1013 "try again
                     later" may wait up to 2 * cap (see widget/core/backoff.py).
    stable_after     a connection that stayed up this long resets the attempt
                     counter when it ends; shorter-lived ones keep counting,
                     so a server that accepts then drops gets growing delays.
    ping_interval    heartbeat period while connected (4 s).
    dead_after       silence (no frame at all) after which the socket is dead
                     (10 s). Defaults detect a silent dead socket within
                     ping_interval + dead_after = 14 s (< 15 s required),
                     while a healthy socket answering pings is never more
                     than ~ping_interval + RTT silent, well under dead_after.
    beat_margin      with a server that beats (its welcome's ``heartbeat``), a tick
                     pings only when nothing arrived for the beat interval plus
                     this (1 s): a beat this late costs one ping, never a false
                     "dead". Capped so the silence that prompts a ping is at
                     most dead_after - ping_interval (6 s): detection stays
                     within ping_interval + dead_after whatever the server says.
    verify_timeout   after the page becomes visible (or a ping is needed to
                     judge liveness) the server must answer within this.
    alert_after      after this many consecutive failures (count), Render
                     carries alert "unreachable"; the widget keeps trying.
    hidden_delay     retry pacing while the page is hidden: each delay is
                     max(normal delay, hidden_delay * (0.5 + 0.5 * random)).
    """

    def __init__(self, connect_timeout=5.0, backoff_base=0.75, backoff_cap=30.0,
                 stable_after=5.0, ping_interval=4.0, dead_after=10.0,
                 verify_timeout=3.0, alert_after=3, hidden_delay=30.0,
                 welcome_timeout=4.0, probation=2.0, beat_margin=1.0):
        self.connect_timeout = connect_timeout
        self.welcome_timeout = welcome_timeout
        self.probation = probation
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stable_after = stable_after
        self.ping_interval = ping_interval
        self.dead_after = dead_after
        self.verify_timeout = verify_timeout
        self.alert_after = alert_after
        self.hidden_delay = hidden_delay
        self.beat_margin = beat_margin

    def problems(self):
        """List of human-readable problems; empty when the settings are usable."""
        out = []
        for name in ("connect_timeout", "backoff_base", "backoff_cap", "ping_interval", "dead_after",
                     "verify_timeout", "hidden_delay", "welcome_timeout", "probation", "beat_margin"):
            v = getattr(self, name)
            if not _is_number(v) or not v > 0:
                out.append("%s must be a positive number" % name)
        if not _is_number(self.stable_after) or self.stable_after < 0:
            out.append("stable_after must be a number >= 0")
        if not isinstance(self.alert_after, int) or isinstance(self.alert_after, bool) \
                or self.alert_after < 1:
            out.append("alert_after must be an integer >= 1")
        if not out:
            if self.backoff_cap < self.backoff_base:
                out.append("backoff_cap must be >= backoff_base")
            if self.dead_after < self.ping_interval:
                out.append("dead_after must be >= ping_interval")
        return out

    def __repr__(self):
        return ("Settings(connect_timeout=%r, backoff_base=%r, backoff_cap=%r, "
                "stable_after=%r, ping_interval=%r, dead_after=%r, verify_timeout=%r, "
                "alert_after=%r, hidden_delay=%r, welcome_timeout=%r, probation=%r, beat_margin=%r)" % (
                    self.connect_timeout, self.backoff_base, self.backoff_cap,
                    self.stable_after, self.ping_interval, self.dead_after,
                    self.verify_timeout, self.alert_after, self.hidden_delay,
                    self.welcome_timeout, self.probation, self.beat_margin))


def _is_number(v):
    return (isinstance(v, int) or isinstance(v, float)) and not isinstance(v, bool)


def positive(value, default):
    """``value`` when it is a positive number (a page setting may be anything), else ``default``."""
    return value if _is_number(value) and value > 0 else default




def check(settings, page_protocol):
    """Return a problem naming the setting, or None. ``settings`` is the page's settings dict."""
    url = settings.get("socket_url")
    if not isinstance(url, str) or not url:
        return "socket_url is missing"
    if url.startswith("/"):
        return None
    scheme = url.split(":", 1)[0]
    if scheme not in ("ws", "wss") or "//" not in url or len(url.split("//", 1)[1]) == 0:
        return "socket_url %r is not a ws:// or wss:// URL" % url[:80]
    if page_protocol == "https:" and scheme == "ws":
        return "socket_url uses ws:// on an https page; browsers block this mixed content: use wss://"
    return None


def socket_url(settings, page_protocol, page_host):
    """The absolute ws(s):// URL of the socket, with the protocol version (``?v=1``)."""
    url = settings.get("socket_url") or "/ws"
    if url.startswith("/"):
        scheme = "wss:" if page_protocol == "https:" else "ws:"
        url = scheme + "//" + page_host + url
    return url + ("&" if "?" in url else "?") + "v=%d" % frames.VERSION


def poll_url(settings, page_protocol, page_host):
    """The absolute http(s):// base URL of the HTTP fallback (``/poll``)."""
    url = settings.get("poll_url") or "/poll"
    if url.startswith("/"):
        url = page_protocol + "//" + page_host + url
    return url


def check_url(settings, page_origin):
    """The ``/ws-check`` URL that answers for this page's origin (browsers send no Origin on same-origin GETs)."""
    return (settings.get("check_url") or "/ws-check") + "?origin=" + quote(page_origin)


_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()"


def quote(text):
    """Percent-encode like JavaScript's encodeURIComponent (MicroPython has no urllib)."""
    out = []
    for char in text:
        if char in _UNRESERVED:
            out.append(char)
        else:
            for byte in char.encode("utf-8"):
                out.append("%%%02X" % byte)
    return "".join(out)
