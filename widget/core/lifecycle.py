"""Connection lifecycle of the chat widget: a sans-I/O state machine.

In the style of h11/wsproto and Phoenix socket.js: this module performs no
I/O, reads no clock and owns no timers. The browser shell feeds it events
(each with ``now``, wall-clock seconds) and carries out the returned list of
actions (open/close a WebSocket, send a frame, start/cancel a named one-shot
timer, render the status, probe the server, log). Runs unchanged under
CPython, Pyodide and MicroPython, so it sticks to a small language subset:
plain classes, no typing/dataclasses/enum/collections, no time module.

States
    connecting    the very first attempt after start() (or restart()) is in flight
    connected     the server's welcome arrived on the socket: the conversation is live
    reconnecting  waiting for the retry timer, or a re-attempt in flight (or on
                  probation: joined, but the last connections were cut soon after)
    offline       the browser says there is no network; nothing is attempted
    failed        terminal (origin refused, policy, too big, protocol, config);
                  only retry_pressed() leaves it
(plus "idle" before start() and after stop(); it is never rendered)

Invariants (checked by the tests)
    * at most one socket is current; OpenSocket is never emitted while one is;
      a socket stops being current the moment we emit CloseSocket for it, and
      events carrying any other socket_id are ignored (Phoenix "teardown");
    * in connecting/reconnecting/connected some timer is always running that
      moves the machine on (connect, retry, heartbeat, or probation): it cannot get stuck;
    * in offline, failed and idle no timer is running.

An attempt ("opened" is not "connected")
    A socket that opens but does not deliver the server's welcome within
    welcome_timeout is a failed attempt, as is one that dies within
    stable_after of its welcome: proxies that buffer or cut live connections
    do both. Such failures are *interference* on the path (as is a refused
    upgrade while /ws-check answers over HTTP); ``interference`` names it
    once the evidence is clear, so the client can fall back to HTTP. After a
    connection was cut soon after its welcome, the next one is "on
    probation": it is shown connected only once it has lived ``probation``
    seconds, so a proxy that cuts every connection never flashes "Connected".

Liveness ("is the socket dead?")
    Any received frame is proof of life. The heartbeat timer ticks every
    ping_interval while connected and sends {"type": "ping", "t": now}; the
    server answers {"type": "pong"}. A server that beats (its welcome carries
    ``heartbeat``: interval, idle_timeout) sends {"type": "beat"} every
    interval by itself, so a tick pings only when the beats are late (nothing
    received for ``quiet`` = min(interval + beat_margin, dead_after -
    ping_interval)) or as a keepalive (the last ping is idle_timeout / 3 old:
    the server's idle timeout counts only our frames). At a tick the socket is dead when
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
    with the defaults (< 15 s required). With beats too: the first tick
    after ``quiet`` (<= 6 s) of silence pings, at most ping_interval after
    it; the next tick, ping_interval later, finds more than dead_after of
    silence and that ping unanswered: quiet + 2 * ping_interval <= 14 s.
"""

from protocol import close, frames
from protocol.close import FAIL, SLOW
from widget.core.actions import CancelTimer, CloseSocket, Log, OpenSocket, ProbeServer, Render, Send, StartTimer
from widget.core.backoff import next_delay, paced_delay
from widget.core.settings import Settings


IDLE = "idle"  # before start() / after stop(); rendered by the client until the visitor opens the chat
CONNECTING = "connecting"
CONNECTED = "connected"
RECONNECTING = "reconnecting"
OFFLINE = "offline"
FAILED = "failed"
STATES = (CONNECTING, CONNECTED, RECONNECTING, OFFLINE, FAILED)

CONNECT_TIMER = "connect"      # the handshake (until open), then the welcome (until joined)
RETRY_TIMER = "retry"
HEARTBEAT_TIMER = "heartbeat"
VERIFY_TIMER = "verify"
PROBATION_TIMER = "probation"
TIMERS = (CONNECT_TIMER, RETRY_TIMER, HEARTBEAT_TIMER, VERIFY_TIMER, PROBATION_TIMER)

# Kinds of interference evidence, and how much each weighs: a socket that opened but stayed silent
# is clear at once; one cut soon after opening could be a server crash, so it takes two.
SILENT = "silent"      # opened, but no welcome within welcome_timeout
CUT = "cut"            # closed abnormally (or went silent) soon after opening
REFUSED = "refused"    # the upgrade fails while /ws-check answers over HTTP
EVIDENCE_WEIGHT = {SILENT: 2, CUT: 1}
EVIDENCE_NEEDED = 2

# Render.alert carries a failure class of protocol/close.py (or None). While reconnecting it is the
# server's own reason when it gave one (a close with 1012/1013/42xx, or a probe saying draining) until
# the next welcome, going online, Retry, or a probe that no longer says so; otherwise unreachable or
# interference once alert_after attempts have failed.


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
        self._joined_at = None    # when its welcome arrived (None: not yet)
        self._evidence = 0        # weight of consecutive interference evidence (EVIDENCE_WEIGHT)
        self._evidence_kind = None
        self._on_probation = False  # the last connection was cut soon after its welcome
        self.last_failure = None  # failure class of the last failed attempt, for reports
        self._probed = False      # probed the server since the last successful open
        self._blocked = False     # last probe: HTTP works although the socket does not
        self._last_rx = None      # last frame (or open) on the current socket
        self._ping_at = None      # earliest ping not yet followed by any frame
        self._pinged = None       # when the last ping was sent on the current socket
        self._beats = None        # (interval, idle_timeout) of the current socket's server beats, or None
        self._hidden = False
        self._offline = False     # browser reported offline (remembered in FAILED/IDLE)
        self._server_says = None  # why the server itself refused for now (close.DRAINING, STORE_BUSY,
                                  # ADDRESS_LIMITED), or None: the alert while reconnecting
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
        self._server_says = None
        self._ever_tried = False
        problems = self.settings.problems()
        if config_error:
            problems = [str(config_error)] + problems
        if problems:
            return self._terminal(now, close.CONFIG, "; ".join(problems))
        if self._offline:
            return self._go_offline(now)
        return self._attempt_now(now)

    def opened(self, now, socket_id):
        """The current socket's 'open' event."""
        if socket_id is None or socket_id != self.socket_id:
            return []
        if self._opened_at is not None:
            return [Log("debug", "chat: duplicate open for socket %r ignored" % socket_id)]
        acts = self._cancel(CONNECT_TIMER)
        self._opened_at = now
        self._last_rx = now
        self._ping_at = None
        # Open is not connected: the welcome must follow, or a proxy is in the way.
        acts += self._start_timer(CONNECT_TIMER, self.settings.welcome_timeout)
        acts.append(Log("debug", "chat: socket %r open; waiting for welcome" % socket_id))
        return acts

    def joined(self, now, socket_id, heartbeat=None):
        """The server's welcome arrived on the current socket: the conversation is live. ``heartbeat``:
        ``(interval, idle_timeout)`` when the server beats on it (``frames.read_heartbeat``), else None."""
        if socket_id is None or socket_id != self.socket_id or self._opened_at is None:
            return []
        if self._joined_at is not None:
            return [Log("debug", "chat: duplicate welcome ignored")]
        acts = self._cancel(CONNECT_TIMER) + self._watch(now, heartbeat)
        self._probed = False
        self._blocked = False
        self._server_says = None
        self.retry_at = None
        if self._on_probation:
            acts += self._start_timer(PROBATION_TIMER, self.settings.probation)
            acts.append(self._render(self.state))
            return acts + [Log("debug", "chat: joined on probation (the last connection was cut soon after)")]
        return acts + self._connect()

    def handover(self, now, socket_id, heartbeat=None):
        """The client moved the live conversation to another joined socket (an HTTP fallback
        upgraded back to WebSocket): close the old one, keep the state, watch the new one."""
        if self.state != CONNECTED or self.socket_id is None or socket_id == self.socket_id:
            return []
        acts = [CloseSocket(self.socket_id, close.NORMAL, "moved to another transport")]
        acts += self._cancel(VERIFY_TIMER)
        self.socket_id = socket_id
        self._opened_at = now
        return acts + self._watch(now, heartbeat)

    def _watch(self, now, heartbeat):
        """The current socket was welcomed at ``now``: live from here, and watched by the heartbeat."""
        self._joined_at = now
        self._last_rx = now
        self._ping_at = None
        self._pinged = now  # the hello (or the last frame on the old transport) just reset the idle timeout
        self._beats = heartbeat
        return self._start_timer(HEARTBEAT_TIMER, self.settings.ping_interval)

    @property
    def live(self):
        """The current socket has been welcomed (even on probation): frames may flow."""
        return self.socket_id is not None and self._joined_at is not None

    @property
    def interference(self):
        """Why live connections fail on the path ("refused", "silent", "cut"), or None."""
        if self._blocked:
            return REFUSED
        if self._evidence >= EVIDENCE_NEEDED:
            return self._evidence_kind
        return None

    def _connect(self):
        first = self.state == CONNECTING
        self.state = CONNECTED
        acts = [self._render(CONNECTED)]
        acts.append(Log("debug", "chat: connected" if first else "chat: reconnected"))
        return acts

    def received(self, now, socket_id, frame):
        """A decoded frame arrived. Any frame is proof of life; pongs and beats
        are consumed here (the client passes neither on to the conversation)."""
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
        kind, alert = close.classify(code)
        before_open = self._opened_at is None
        self.socket_id = None
        if kind == FAIL:
            text = close.FAILURES[alert]
            if reason:
                text = "%s: %s" % (text, reason)
            return self._terminal(now, alert, "%s (code %s)" % (text, code))
        if alert is not None:  # the server said why (restarting, busy, limited): say that while retrying
            self._server_says = alert
        what = "code %s" % (code,)
        if reason:
            what = "%s, %s" % (what, reason)
        if not clean and code != 1006:
            what = what + ", unclean"
        evidence = None
        if not before_open and not clean and self._short_lived(now):
            evidence = CUT
        return self._failure(now, what, before_open, now, kind == SLOW, evidence)

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
        if name == PROBATION_TIMER:
            if not self.live or self.state == CONNECTED:
                return []
            return self._connect()
        # VERIFY_TIMER: a ping sent to check liveness was not answered in time.
        if not self.live:
            return []
        return self._dead(now, "no reply to liveness check")

    def restart(self, now, why):
        """The client starts over on a new connection at once (the server's conversation is full, so the
        next hello asks for a new one): close the current socket normally and open another. Not a
        failure: no backoff, no probe, the attempt counter and the path's evidence stay as they are.
        Ignored where no connection is wanted (idle, offline, failed)."""
        if self.state not in (CONNECTING, CONNECTED, RECONNECTING):
            return [Log("debug", "chat: restart ignored in %s" % self.state)]
        acts = self._halt(why)
        self._ever_tried = False  # shown as a fresh start ("connecting"), not as a failed connection
        acts.append(Log("info", "chat: starting over on a new connection (%s)" % why))
        return acts + self._attempt_now(now)

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
        self._server_says = None
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
            if self.alert == close.CONFIG:
                return [Log("debug", "chat: retry ignored: configuration problem")]
            if self._offline:
                return self._go_offline(now)
            self._server_says = None
            acts = [Log("info", "chat: retrying")]
            return acts + self._attempt_now(now)
        return self.retry_now(now, "retry pressed")

    def retry_now(self, now, why, new_path=False):
        """Skip the wait for the retry timer: attempt at once. ``new_path``: the client changed transport,
        so what the old one suffered (probation after cuts) says nothing about the next connection."""
        if new_path:
            self._on_probation = False
        if self.state == RECONNECTING and self.socket_id is None and not self._offline:
            return [Log("debug", "chat: %s; attempting now" % why)] + self._attempt_now(now)
        return []

    def probe_result(self, now, result):
        """Answer to ProbeServer: "ok" | "unreachable" | "origin_rejected" |
        "draining"."""
        if result not in close.PROBE_RESULTS:
            raise ValueError("unknown probe result %r" % (result,))
        if self.state not in (CONNECTING, RECONNECTING) or self._opened_at is not None:
            # connected, or a socket has opened since: the server took it, whatever the probe says
            return [Log("debug", "chat: probe result %r ignored in %s" % (result, self.state))]
        if result == close.PROBE_ORIGIN:
            acts = []
            if self.socket_id is not None:
                acts.append(CloseSocket(self.socket_id, close.NORMAL, "origin rejected"))
                self.socket_id = None
            return acts + self._terminal(now, close.ORIGIN, close.FAILURES[close.ORIGIN])
        if result == close.PROBE_HEADERS:
            return self._terminal(now, close.HEADERS_TOO_LARGE, close.FAILURES[close.HEADERS_TOO_LARGE])
        if result == close.PROBE_DRAINING:
            if self._server_says == close.DRAINING:
                return []
            self._server_says = close.DRAINING
            return [self._render(self.state)]
        # "ok" / "unreachable": the server no longer says it refuses; "ok" while sockets keep
        # failing means something between the visitor and the server blocks WebSockets.
        blocked = result == close.PROBE_OK
        if result == close.PROBE_UNREACHABLE:
            self._evidence = 0  # the server itself is out of reach: not the path's doing
        if result == close.PROBE_UNREACHABLE and self._server_says is not None:
            return []  # a restarting server is unreachable for a moment: keep saying what it said
        if self._server_says is None and blocked == self._blocked:
            return []
        self._server_says = None
        self._blocked = blocked
        return [self._render(self.state)]

    def stop(self, now):
        """The widget is being torn down: close with 1000, cancel all timers."""
        acts = []
        if self.socket_id is not None:
            acts.append(CloseSocket(self.socket_id, close.NORMAL, "stop"))
            self.socket_id = None
        acts += self._cancel_all()
        if self.state != IDLE:
            acts.append(Log("debug", "chat: stopped"))
        self.state = IDLE
        self.retry_at = None
        self._opened_at = None
        self._joined_at = None
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
            if self._server_says is not None:
                alert = self._server_says
            elif self.attempt >= self.settings.alert_after:
                alert = close.INTERFERENCE if self._blocked or self._evidence else close.UNREACHABLE
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
        self._pinged = now
        return Send(self.socket_id, frames.ping(now))

    def _ping_due(self, now):
        """At a tick: without server beats always; with them only when they are late, or as a keepalive."""
        if self._beats is None:
            return True
        s = self.settings
        interval, idle_timeout = self._beats
        quiet = min(interval + s.beat_margin, s.dead_after - s.ping_interval)
        keepalive = max(idle_timeout / 3.0, s.ping_interval)
        return now - self._last_rx > quiet or now - self._pinged >= keepalive

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
            acts.append(CloseSocket(self.socket_id, close.NORMAL, "replaced"))
        self._next_id += 1
        self.socket_id = self._next_id
        self._opened_at = None
        self._joined_at = None
        self._last_rx = None
        self._ping_at = None
        self._beats = None
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
        if self.socket_id is None or self._joined_at is not None:
            return []
        if self._opened_at is not None:  # open, but the server's welcome never came through
            acts = [CloseSocket(self.socket_id, close.CONNECT_TIMEOUT, "no welcome")]
            self.socket_id = None
            what = "open but no welcome within %.1f s" % self.settings.welcome_timeout
            return acts + self._failure(now, what, False, now, False, SILENT)
        acts = [CloseSocket(self.socket_id, close.CONNECT_TIMEOUT, "connect timeout")]
        self.socket_id = None
        return acts + self._failure(now, "connect timeout", True, now, False)

    def _short_lived(self, now):
        """The current socket opened but was not welcomed, or lived less than stable_after since."""
        return self._joined_at is None or now - self._joined_at < self.settings.stable_after

    def _heartbeat(self, now):
        if not self.live:
            return []
        if self._silent_too_long(now):
            return self._dead(now, "no frame for %.1f s" % (now - self._last_rx))
        acts = [self._ping(now)] if self._ping_due(now) else []
        acts += self._start_timer(HEARTBEAT_TIMER, self.settings.ping_interval)
        return acts

    def _dead(self, now, why):
        """The connected socket is judged dead: close it, then the abnormal path."""
        evidence = CUT if self._short_lived(self._last_rx) else None
        acts = [CloseSocket(self.socket_id, close.HEARTBEAT_TIMEOUT, "heartbeat timeout")]
        self.socket_id = None
        # It was provably alive only until the last frame.
        return acts + self._failure(now, why, False, self._last_rx, False, evidence)

    def _failure(self, now, what, before_open, alive_until, slow, evidence=None):
        """The one recovery path: the current socket is gone (already closed
        or CloseSocket emitted; socket_id is None). Schedule a retry."""
        s = self.settings
        was = self.state
        acts = []
        acts += self._cancel(CONNECT_TIMER)
        acts += self._cancel(HEARTBEAT_TIMER)
        acts += self._cancel(VERIFY_TIMER)
        acts += self._cancel(PROBATION_TIMER)
        if self._joined_at is not None and alive_until - self._joined_at >= s.stable_after:
            self.attempt = 0
            self._evidence = 0
            self._on_probation = False
        if before_open:
            self._evidence = 0  # proxies that cut or withhold let the upgrade through; this one failed before
        if evidence is not None:
            self._evidence += EVIDENCE_WEIGHT[evidence]
            self._evidence_kind = evidence
            self._on_probation = self._joined_at is not None
            self.last_failure = close.INTERFERENCE
        elif self._server_says is not None:
            self.last_failure = self._server_says
        else:
            self.last_failure = close.INTERFERENCE if self._blocked else close.UNREACHABLE
        self._opened_at = None
        self._joined_at = None
        self.attempt += 1
        # A path that clearly breaks live connections will not mend in a second: pace like "try later".
        slow = slow or (evidence is not None and self._evidence >= EVIDENCE_NEEDED)
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
            acts.append(CloseSocket(self.socket_id, close.NORMAL, reason))
            self.socket_id = None
        acts += self._cancel_all()
        self._opened_at = None
        self._joined_at = None
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
