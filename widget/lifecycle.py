"""Connection lifecycle of the chat widget: a sans-I/O state machine.

In the style of h11/wsproto and Phoenix socket.js: this module performs no
I/O, reads no clock and owns no timers. The browser shell feeds it events
(each with ``now``, wall-clock seconds) and carries out the returned list of
actions (open/close a WebSocket, send a frame, start/cancel a named one-shot
timer, render the status, probe the server, log). Runs unchanged under
CPython, Pyodide and MicroPython, so it sticks to a small language subset:
plain classes, no typing/dataclasses/enum/collections, no time module.

States
    connecting    the very first attempt after start() is in flight
    connected     socket open; heartbeat running
    reconnecting  waiting for the retry timer, or a re-attempt in flight
    offline       the browser says there is no network; nothing is attempted
    failed        terminal (origin refused, policy, too big, protocol, config);
                  only retry_pressed() leaves it
(plus "idle" before start() and after stop(); it is never rendered)

Invariants (checked by the tests)
    * at most one socket is current; OpenSocket is never emitted while one is;
      a socket stops being current the moment we emit CloseSocket for it, and
      events carrying any other socket_id are ignored (Phoenix "teardown");
    * in connecting/reconnecting/connected some timer is always running that
      moves the machine on (connect, retry or heartbeat): it cannot get stuck;
    * in offline, failed and idle no timer is running.

Liveness ("is the socket dead?")
    Any received frame is proof of life. The heartbeat timer ticks every
    ping_interval while connected and sends {"type": "ping", "t": now}; the
    server answers {"type": "pong"}. At a tick the socket is dead when
        now - last_received > dead_after            (silent too long)
        and a ping has been unanswered for at least min(ping_interval,
            verify_timeout)                          (we were asking)
    Both are judged by wall clock, never by counting ticks. The second clause
    matters in throttled background tabs, where a tick can arrive a minute
    late: if our previous ping went unanswered the socket is declared dead at
    once, but if the silence is only because *our* timer slept (last ping was
    answered), a healthy socket is not killed: we ping and it gets
    min(ping_interval, verify_timeout) to answer. In a foreground tab the
    second clause is always true when the first is, so worst-case detection
    of a silent dead socket is ping_interval + dead_after = 4 + 10 = 14 s
    with the defaults (< 15 s required).
"""

try:
    from .backoff import next_delay, paced_delay
except ImportError:  # loaded as a top-level module (flat layout in the browser FS)
    from backoff import next_delay, paced_delay


IDLE = "idle"  # before start() / after stop(); not a rendered state
CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
OFFLINE = "offline"
FAILED = "failed"
STATES = (CONNECTING, CONNECTED, RECONNECTING, OFFLINE, FAILED)

CONNECT_TIMER = "connect"
RETRY_TIMER = "retry"
HEARTBEAT_TIMER = "heartbeat"
VERIFY_TIMER = "verify"
TIMERS = (CONNECT_TIMER, RETRY_TIMER, HEARTBEAT_TIMER, VERIFY_TIMER)

PROBE_RESULTS = ("ok", "unreachable", "origin_rejected", "draining")

# Alert keys carried by Render.alert
ALERT_UNREACHABLE = "unreachable"
ALERT_BLOCKED = "blocked"  # the server answers HTTP but sockets fail: a proxy or firewall
ALERT_ORIGIN = "origin"
ALERT_TOO_BIG = "too_big"
ALERT_POLICY = "policy"
ALERT_PROTOCOL = "protocol"
ALERT_DRAINING = "draining"
ALERT_CONFIG = "config"

# Close codes we send (browsers only allow 1000 and 4000-4999 from script).
CLOSE_NORMAL = 1000
CLOSE_CONNECT_TIMEOUT = 4100
CLOSE_HEARTBEAT_TIMEOUT = 4101


class Settings:
    """Tunables, in seconds unless noted.

    connect_timeout  give up on a handshake after this long (close 4100).
    backoff_base     ceiling of the first retry delay (full jitter below it).
    backoff_cap      largest ceiling of a normal retry delay; 1013 "try again
                     later" may wait up to 2 * cap (see widget/backoff.py).
    stable_after     a connection that stayed up this long resets the attempt
                     counter when it ends; shorter-lived ones keep counting,
                     so a server that accepts then drops gets growing delays.
    ping_interval    heartbeat period while connected (4 s).
    dead_after       silence (no frame at all) after which the socket is dead
                     (10 s). Defaults detect a silent dead socket within
                     ping_interval + dead_after = 14 s (< 15 s required),
                     while a healthy socket answering pings is never more
                     than ~ping_interval + RTT silent, well under dead_after.
    verify_timeout   after the page becomes visible (or a ping is needed to
                     judge liveness) the server must answer within this.
    alert_after      after this many consecutive failures (count), Render
                     carries alert "unreachable"; the widget keeps trying.
    hidden_delay     retry pacing while the page is hidden: each delay is
                     max(normal delay, hidden_delay * (0.5 + 0.5 * random)).
    """

    def __init__(self, connect_timeout=5.0, backoff_base=0.75, backoff_cap=30.0,
                 stable_after=5.0, ping_interval=4.0, dead_after=10.0,
                 verify_timeout=3.0, alert_after=3, hidden_delay=30.0):
        self.connect_timeout = connect_timeout
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stable_after = stable_after
        self.ping_interval = ping_interval
        self.dead_after = dead_after
        self.verify_timeout = verify_timeout
        self.alert_after = alert_after
        self.hidden_delay = hidden_delay

    def problems(self):
        """List of human-readable problems; empty when the settings are usable."""
        out = []
        for name in ("connect_timeout", "backoff_base", "backoff_cap",
                     "ping_interval", "dead_after", "verify_timeout", "hidden_delay"):
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
                "alert_after=%r, hidden_delay=%r)" % (
                    self.connect_timeout, self.backoff_base, self.backoff_cap,
                    self.stable_after, self.ping_interval, self.dead_after,
                    self.verify_timeout, self.alert_after, self.hidden_delay))


def _is_number(v):
    return (isinstance(v, int) or isinstance(v, float)) and not isinstance(v, bool)


# ---------------------------------------------------------------- actions

class _Action:
    """Base of the action classes: equality and repr by the listed fields."""
    _fields = ()

    def __eq__(self, other):
        if type(self) is not type(other):
            return False
        for f in self._fields:
            if getattr(self, f) != getattr(other, f):
                return False
        return True

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        parts = []
        for f in self._fields:
            parts.append("%s=%r" % (f, getattr(self, f)))
        return "%s(%s)" % (type(self).__name__, ", ".join(parts))


class OpenSocket(_Action):
    """Open a new WebSocket; every event about it carries socket_id."""
    _fields = ("socket_id",)

    def __init__(self, socket_id):
        self.socket_id = socket_id


class CloseSocket(_Action):
    """Close the socket (code 1000 or 4000-4999). It is no longer current."""
    _fields = ("socket_id", "code", "reason")

    def __init__(self, socket_id, code, reason):
        self.socket_id = socket_id
        self.code = code
        self.reason = reason


class Send(_Action):
    """Send frame (a dict; the shell JSON-encodes it) on the socket."""
    _fields = ("socket_id", "frame")

    def __init__(self, socket_id, frame):
        self.socket_id = socket_id
        self.frame = frame


class StartTimer(_Action):
    """(Re)start the named one-shot timer; restarting replaces the old one."""
    _fields = ("name", "delay")

    def __init__(self, name, delay):
        self.name = name
        self.delay = delay


class CancelTimer(_Action):
    """Cancel the named timer (a no-op for the shell if it is not running)."""
    _fields = ("name",)

    def __init__(self, name):
        self.name = name


class Render(_Action):
    """Show the connection status.

    state: one of STATES. attempt: consecutive failed attempts so far, which
    while reconnecting is also the 1-based number of the upcoming / in-flight
    retry (0 after coming back online). retry_at: absolute time (same clock
    as now) of the next attempt, for a countdown, or None (nothing scheduled,
    or an attempt is in flight). alert: None or a message key (ALERT_*).
    """
    _fields = ("state", "attempt", "retry_at", "alert")

    def __init__(self, state, attempt=0, retry_at=None, alert=None):
        self.state = state
        self.attempt = attempt
        self.retry_at = retry_at
        self.alert = alert


class ProbeServer(_Action):
    """Probe the server over HTTP to learn why a handshake failed; answer
    with Lifecycle.probe_result()."""
    _fields = ()

    def __init__(self):
        pass


class Log(_Action):
    """A console line. level: "info" | "debug" | "warn" (debug shown only in
    debug mode)."""
    _fields = ("level", "text")

    def __init__(self, level, text):
        self.level = level
        self.text = text


# ------------------------------------------------------- close-code policy

RETRY = "retry"      # reconnect with normal backoff
SLOW = "slow"        # reconnect with the longer 1013 delay
FAIL = "fail"        # terminal


def classify_close(code):
    """Close-code policy for a close of the current socket.

    Returns (kind, alert): kind is RETRY, SLOW or FAIL; alert is the Render
    alert key to show (for FAIL) or None / ALERT_DRAINING (retry kinds).

    1008 policy violation   -> FAIL "policy"
    1009 message too big    -> FAIL "too_big"
    4000-4099 (from server) -> FAIL "protocol" (application says: do not retry)
    1012 service restart    -> RETRY, alert "draining". With full jitter the
                               herd spreads; after a stable connection this
                               is the first-attempt ceiling (<= base).
    1013 try again later    -> SLOW, alert "draining"
    anything else (1000 from the server, 1001, 1005, 1006, 1011, 4100+, ...)
                            -> RETRY
    """
    if code == 1008:
        return FAIL, ALERT_POLICY
    if code == 1009:
        return FAIL, ALERT_TOO_BIG
    if isinstance(code, int) and 4000 <= code <= 4099:
        return FAIL, ALERT_PROTOCOL
    if code == 1012:
        return RETRY, ALERT_DRAINING
    if code == 1013:
        return SLOW, ALERT_DRAINING
    return RETRY, None


_FAIL_TEXT = {
    ALERT_ORIGIN: "this site's origin is not allowed by the chat server",
    ALERT_POLICY: "the server refused the connection (policy, code 1008)",
    ALERT_TOO_BIG: "a message was too big for the server (code 1009)",
    ALERT_PROTOCOL: "the server ended the session",
    ALERT_CONFIG: "bad widget configuration",
}


# ---------------------------------------------------------------- machine

class Lifecycle:
    """The connection state machine. Every input takes ``now`` (float
    seconds, wall clock) first and returns a list of actions, in order."""

    def __init__(self, settings=None, random=None):
        if settings is None:
            settings = Settings()
        if random is None:
            import random as _random_module
            random = _random_module.random
        self.settings = settings
        self._random = random
        self.state = IDLE
        self.attempt = 0          # consecutive failures so far
        self.socket_id = None     # current socket, or None
        self.retry_at = None      # when the retry timer is due, or None
        self.alert = None         # alert of the last Render
        self._next_id = 0
        self._timers = {}         # running timers: name -> True
        self._opened_at = None    # when the current socket opened (None: in flight)
        self._probed = False      # probed the server since the last successful open
        self._blocked = False     # last probe: HTTP works although the socket does not
        self._last_rx = None      # last frame (or open) on the current socket
        self._ping_at = None      # earliest ping not yet followed by any frame
        self._hidden = False
        self._offline = False     # browser reported offline (remembered in FAILED/IDLE)
        self._draining = False    # server said it is restarting / unavailable
        self._ever_tried = False  # the first attempt has been made

    def __repr__(self):
        return "Lifecycle(state=%r, attempt=%r, socket_id=%r)" % (
            self.state, self.attempt, self.socket_id)

    # -- inputs -------------------------------------------------------

    def start(self, now, config_error=None):
        """Begin connecting. config_error: optional text of a configuration
        problem found by the shell; it (or invalid Settings) gives FAILED
        with alert "config" instead."""
        if self.state != IDLE:
            return [Log("debug", "chat: start() ignored: already %s" % self.state)]
        self.attempt = 0
        self._draining = False
        self._ever_tried = False
        problems = self.settings.problems()
        if config_error:
            problems = [str(config_error)] + problems
        if problems:
            return self._terminal(now, ALERT_CONFIG, "; ".join(problems))
        if self._offline:
            return self._go_offline(now)
        return self._attempt_now(now)

    def opened(self, now, socket_id):
        """The current socket's 'open' event."""
        if socket_id is None or socket_id != self.socket_id:
            return []
        if self._opened_at is not None:
            return [Log("debug", "chat: duplicate open for socket %r ignored" % socket_id)]
        s = self.settings
        first = self.state == CONNECTING
        acts = self._cancel(CONNECT_TIMER)
        self.state = CONNECTED
        self._opened_at = now
        self._probed = False
        self._blocked = False
        self._last_rx = now
        self._ping_at = None
        self._draining = False
        self.retry_at = None
        acts += self._start_timer(HEARTBEAT_TIMER, s.ping_interval)
        acts.append(self._render(CONNECTED))
        acts.append(Log("info", "chat: connected" if first else "chat: reconnected"))
        return acts

    def received(self, now, socket_id, frame):
        """A decoded frame arrived. Any frame is proof of life; pongs are
        consumed here (the shell should not pass {"type": "pong"} on)."""
        if socket_id is None or socket_id != self.socket_id:
            return []
        if self._opened_at is None:
            return [Log("debug", "chat: frame before open ignored")]
        self._last_rx = now
        self._ping_at = None
        return self._cancel(VERIFY_TIMER)

    def closed(self, now, socket_id, code, reason, clean):
        """The current socket's 'close' event (code, reason, wasClean)."""
        if socket_id is None or socket_id != self.socket_id:
            return []
        kind, alert = classify_close(code)
        before_open = self._opened_at is None
        self.socket_id = None
        if kind == FAIL:
            text = _FAIL_TEXT[alert]
            if reason:
                text = "%s: %s" % (text, reason)
            return self._terminal(now, alert, "%s (code %s)" % (text, code))
        if alert == ALERT_DRAINING:
            self._draining = True
        what = "code %s" % (code,)
        if reason:
            what = "%s, %s" % (what, reason)
        if not clean and code != 1006:
            what = what + ", unclean"
        return self._failure(now, what, before_open, now, kind == SLOW)

    def errored(self, now, socket_id):
        """The browser 'error' event: a 'close' always follows, so no action."""
        if socket_id is None or socket_id != self.socket_id:
            return []
        return [Log("debug", "chat: socket %r error event" % socket_id)]

    def timer_fired(self, now, name):
        """A timer started by StartTimer went off."""
        if name not in TIMERS:
            raise ValueError("unknown timer %r" % (name,))
        if name not in self._timers:
            return [Log("debug", "chat: stale %s timer ignored" % name)]
        del self._timers[name]
        if name == CONNECT_TIMER:
            return self._connect_timeout(now)
        if name == RETRY_TIMER:
            self.retry_at = None
            if self.state != RECONNECTING or self.socket_id is not None or self._offline:
                return [Log("debug", "chat: retry timer ignored in %s" % self.state)]
            return self._attempt_now(now)
        if name == HEARTBEAT_TIMER:
            return self._heartbeat(now)
        # VERIFY_TIMER: a ping sent to check liveness was not answered in time.
        if self.state != CONNECTED:
            return []
        return self._dead(now, "no reply to liveness check")

    def went_offline(self, now):
        """The browser 'offline' event."""
        self._offline = True
        if self.state in (IDLE, FAILED, OFFLINE):
            return []
        return self._go_offline(now)

    def went_online(self, now):
        """The browser 'online' event: attempt at once, as a fresh start."""
        self._offline = False
        if self.state != OFFLINE:
            return []
        self.attempt = 0
        self._draining = False
        acts = [Log("info", "chat: back online; reconnecting")]
        return acts + self._attempt_now(now)

    def page_hidden(self, now):
        """document.visibilityState became 'hidden': slow retry pacing."""
        self._hidden = True
        return []

    def page_visible(self, now):
        """document.visibilityState became 'visible'."""
        self._hidden = False
        if self.state == RECONNECTING and self.socket_id is None:
            # Waiting on the retry timer (perhaps with hidden pacing): the
            # user is looking now, so try at once.
            return self._attempt_now(now)
        if self.state == CONNECTED:
            if self._silent_too_long(now):
                return self._dead(now, "silent while hidden")
            # Prove the socket is alive: ping and expect any frame soon.
            acts = [self._ping(now)]
            acts += self._start_timer(VERIFY_TIMER, self.settings.verify_timeout)
            return acts
        return []

    def retry_pressed(self, now):
        """The user pressed "retry". Leaves RECONNECTING (when waiting) and
        FAILED (except for a config failure, which retrying cannot fix). The
        attempt counter is kept, so backoff and the "unreachable" alert stay
        meaningful if the manual attempt fails too."""
        if self.state == FAILED:
            if self.alert == ALERT_CONFIG:
                return [Log("debug", "chat: retry ignored: configuration problem")]
            if self._offline:
                return self._go_offline(now)
            self._draining = False
            acts = [Log("info", "chat: retrying")]
            return acts + self._attempt_now(now)
        if self.state == RECONNECTING and self.socket_id is None:
            acts = [Log("debug", "chat: retry pressed")]
            return acts + self._attempt_now(now)
        return []

    def probe_result(self, now, result):
        """Answer to ProbeServer: "ok" | "unreachable" | "origin_rejected" |
        "draining"."""
        if result not in PROBE_RESULTS:
            raise ValueError("unknown probe result %r" % (result,))
        if self.state not in (CONNECTING, RECONNECTING):
            return [Log("debug", "chat: probe result %r ignored in %s" % (result, self.state))]
        if result == "origin_rejected":
            acts = []
            if self.socket_id is not None:
                acts.append(CloseSocket(self.socket_id, CLOSE_NORMAL, "origin rejected"))
                self.socket_id = None
            return acts + self._terminal(now, ALERT_ORIGIN, _FAIL_TEXT[ALERT_ORIGIN])
        if result == "draining":
            if self._draining:
                return []
            self._draining = True
            return [self._render(self.state)]
        # "ok" / "unreachable": the server no longer says it is draining; "ok" while sockets keep
        # failing means something between the visitor and the server blocks WebSockets.
        blocked = result == "ok"
        if result == "unreachable" and self._draining:
            return []  # a restarting server is unreachable for a moment: keep saying "restarting"
        if not self._draining and blocked == self._blocked:
            return []
        self._draining = False
        self._blocked = blocked
        return [self._render(self.state)]

    def stop(self, now):
        """The widget is being torn down: close with 1000, cancel all timers."""
        acts = []
        if self.socket_id is not None:
            acts.append(CloseSocket(self.socket_id, CLOSE_NORMAL, "stop"))
            self.socket_id = None
        acts += self._cancel_all()
        if self.state != IDLE:
            acts.append(Log("debug", "chat: stopped"))
        self.state = IDLE
        self.retry_at = None
        self._opened_at = None
        return acts

    # -- internals ----------------------------------------------------

    def _start_timer(self, name, delay):
        self._timers[name] = True
        return [StartTimer(name, delay)]

    def _cancel(self, name):
        if name in self._timers:
            del self._timers[name]
            return [CancelTimer(name)]
        return []

    def _cancel_all(self):
        acts = []
        for name in TIMERS:  # fixed order: no reliance on dict order
            acts += self._cancel(name)
        return acts

    def _render(self, state):
        if state == RECONNECTING:
            if self._draining:
                alert = ALERT_DRAINING
            elif self.attempt >= self.settings.alert_after:
                alert = ALERT_BLOCKED if self._blocked else ALERT_UNREACHABLE
            else:
                alert = None
            r = Render(RECONNECTING, self.attempt, self.retry_at, alert)
        elif state == FAILED:
            r = Render(FAILED, self.attempt, None, self.alert)
        else:  # CONNECTING, CONNECTED, OFFLINE: plain status, no countdown
            r = Render(state, 0, None, None)
        self.alert = r.alert
        return r

    def _ping(self, now):
        if self._ping_at is None:
            self._ping_at = now
        return Send(self.socket_id, {"type": "ping", "t": now})

    def _silent_too_long(self, now):
        s = self.settings
        if now - self._last_rx <= s.dead_after:
            return False
        if self._ping_at is None:
            return False
        grace = s.ping_interval
        if s.verify_timeout < grace:
            grace = s.verify_timeout
        return now - self._ping_at >= grace

    def _attempt_now(self, now):
        """Open a new socket (none is current here)."""
        acts = self._cancel(RETRY_TIMER)
        if self.socket_id is not None:  # defensive: never two sockets
            acts.append(CloseSocket(self.socket_id, CLOSE_NORMAL, "replaced"))
        self._next_id += 1
        self.socket_id = self._next_id
        self._opened_at = None
        self._last_rx = None
        self._ping_at = None
        self.retry_at = None
        acts.append(OpenSocket(self.socket_id))
        acts += self._start_timer(CONNECT_TIMER, self.settings.connect_timeout)
        if not self._ever_tried:
            self._ever_tried = True
            self.state = CONNECTING
            acts.append(self._render(CONNECTING))
        else:
            self.state = RECONNECTING
            acts.append(self._render(RECONNECTING))
            acts.append(Log("debug", "chat: attempt %d, socket %d"
                            % (self.attempt + 1, self.socket_id)))
        return acts

    def _connect_timeout(self, now):
        if self.socket_id is None or self._opened_at is not None:
            return []
        acts = [CloseSocket(self.socket_id, CLOSE_CONNECT_TIMEOUT, "connect timeout")]
        self.socket_id = None
        return acts + self._failure(now, "connect timeout", True, now, False)

    def _heartbeat(self, now):
        if self.state != CONNECTED or self.socket_id is None:
            return []
        if self._silent_too_long(now):
            return self._dead(now, "no frame for %.1f s" % (now - self._last_rx))
        acts = [self._ping(now)]
        acts += self._start_timer(HEARTBEAT_TIMER, self.settings.ping_interval)
        return acts

    def _dead(self, now, why):
        """The connected socket is judged dead: close it, then the abnormal path."""
        acts = [CloseSocket(self.socket_id, CLOSE_HEARTBEAT_TIMEOUT, "heartbeat timeout")]
        self.socket_id = None
        # It was provably alive only until the last frame.
        return acts + self._failure(now, why, False, self._last_rx, False)

    def _failure(self, now, what, before_open, alive_until, slow):
        """The one recovery path: the current socket is gone (already closed
        or CloseSocket emitted; socket_id is None). Schedule a retry."""
        s = self.settings
        was = self.state
        acts = []
        acts += self._cancel(CONNECT_TIMER)
        acts += self._cancel(HEARTBEAT_TIMER)
        acts += self._cancel(VERIFY_TIMER)
        if self._opened_at is not None and alive_until - self._opened_at >= s.stable_after:
            self.attempt = 0
        self._opened_at = None
        self.attempt += 1
        delay = next_delay(self.attempt, s.backoff_base, s.backoff_cap, self._random, slow)
        if self._hidden:
            hidden = paced_delay(s.hidden_delay, self._random)
            if hidden > delay:
                delay = hidden
        self.state = RECONNECTING
        self.retry_at = now + delay
        acts += self._start_timer(RETRY_TIMER, delay)
        acts.append(self._render(RECONNECTING))
        if was == CONNECTED:
            acts.append(Log("info", "chat: connection lost (%s); reconnecting" % what))
        elif was == CONNECTING:
            acts.append(Log("info", "chat: cannot connect (%s); retrying" % what))
        else:
            acts.append(Log("debug", "chat: attempt %d failed (%s); next in %.1f s"
                            % (self.attempt, what, delay)))
        # Probe once per outage, and again when the alert appears, not per attempt: each probe
        # of a dead server costs the visitor's console one more error line.
        if before_open and (not self._probed or self.attempt == s.alert_after):
            self._probed = True
            acts.append(ProbeServer())
        return acts

    def _halt(self, reason):
        """Close the socket (if any) and cancel every timer: nothing runs until a new attempt."""
        acts = []
        if self.socket_id is not None:
            acts.append(CloseSocket(self.socket_id, CLOSE_NORMAL, reason))
            self.socket_id = None
        acts += self._cancel_all()
        self._opened_at = None
        self.retry_at = None
        return acts

    def _terminal(self, now, alert, text):
        """Enter FAILED: no socket, no timers, no attempts until retry_pressed."""
        acts = self._halt("failed")
        self.state = FAILED
        self.alert = alert
        acts.append(self._render(FAILED))
        acts.append(Log("warn", "chat: stopped: %s" % text))
        return acts

    def _go_offline(self, now):
        acts = self._halt("offline")
        self.state = OFFLINE
        acts.append(self._render(OFFLINE))
        acts.append(Log("info", "chat: offline; waiting for the network"))
        return acts
