"""Unit tests for widget/core/lifecycle.py (sans-I/O connection state machine).

Time is a fake clock: every input simply gets a number as ``now``. Randomness
is injected. ``Harness`` below stands in for the browser shell: it carries out
the actions (tracking open sockets and running timers) and checks the
machine's invariants after every input.
"""

import random as stdlib_random

import pytest
from hypothesis import HealthCheck, settings as hsettings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from protocol import close
from widget.core import lifecycle as L
from widget.core.actions import CancelTimer, CloseSocket, Log, OpenSocket, ProbeServer, Render, Send, StartTimer
from widget.core.backoff import FLOOR, ceiling, next_delay
from widget.core.lifecycle import (
    CONNECT_TIMER, CONNECTED, CONNECTING, FAILED, HEARTBEAT_TIMER, IDLE, OFFLINE,
    RECONNECTING, RETRY_TIMER, STATES, Lifecycle,
)
from widget.core.settings import Settings

S = Settings()
HALF = lambda: 0.5  # noqa: E731  deterministic "random"


def d(attempt, slow=False, r=0.5):
    """The delay the machine computes for this attempt with random() == r."""
    return next_delay(attempt, S.backoff_base, S.backoff_cap, lambda: r, slow)


def of(acts, cls):
    return [a for a in acts if isinstance(a, cls)]


def renders(acts):
    return of(acts, Render)


def non_log(acts):
    return [a for a in acts if not isinstance(a, Log)]


def timer(acts, name):
    """The delay of the StartTimer(name) in acts, or None."""
    for a in of(acts, StartTimer):
        if a.name == name:
            return a.delay
    return None


def new(random=HALF, **kw):
    return Lifecycle(Settings(**kw), random=random)


def connected(t=0.0, **kw):
    """A machine whose first socket (id 1) opened at time t."""
    lc = new(**kw)
    lc.start(t)
    lc.opened(t, 1)
    lc.joined(t, 1)
    return lc


class Harness:
    """Carries out the machine's actions like a shell would (sockets, timers) and checks the invariants."""

    def __init__(self, lc):
        self.lc = lc
        self.now = 0.0
        self.sockets = set()   # sockets opened and not yet closed (by us or the browser)
        self.all_ids = []      # every socket id ever opened
        self.timers = {}       # name -> deadline
        self.renders = []
        self.actions = []
        self.answered = 0      # actions[:answered] were seen by the simulated server

    def call(self, method, *args):
        before = self.lc.state
        if method == "timer_fired":
            self.timers.pop(args[0], None)
        if method == "closed":
            self.sockets.discard(args[0])
        acts = getattr(self.lc, method)(self.now, *args)
        self.apply(acts, method, before)
        return acts

    def apply(self, acts, method, before):
        assert isinstance(acts, list)
        for a in acts:
            self.actions.append(a)
            if isinstance(a, OpenSocket):
                assert not self.sockets, "OpenSocket while %r still open" % self.sockets
                if before == FAILED:
                    assert method == "retry_pressed", "FAILED opened a socket on %s" % method
                assert a.socket_id not in self.all_ids
                self.sockets.add(a.socket_id)
                self.all_ids.append(a.socket_id)
            elif isinstance(a, CloseSocket):
                assert a.socket_id in self.sockets
                assert a.code == 1000 or 4000 <= a.code <= 4999
                self.sockets.discard(a.socket_id)
            elif isinstance(a, Send):
                assert a.socket_id in self.sockets
                assert isinstance(a.frame, dict)
            elif isinstance(a, StartTimer):
                assert a.name in L.TIMERS and a.delay > 0
                self.timers[a.name] = self.now + a.delay
            elif isinstance(a, CancelTimer):
                assert a.name in self.timers
                del self.timers[a.name]
            elif isinstance(a, Render):
                assert a.state in STATES
                assert a.alert in (None, "unreachable", "interference", "origin", "headers", "too_big", "policy",
                                   "protocol", "draining", "busy", "limited", "unavailable", "config")
                self.renders.append(a)
            elif isinstance(a, Log):
                assert a.level in ("info", "debug", "warn")
                assert a.text.startswith("chat: ")
            else:
                assert isinstance(a, ProbeServer), a
        rs = renders(acts)
        if rs:
            assert rs[-1].state == self.lc.state
        assert len([a for a in acts if isinstance(a, Log) and a.level == "info"]) <= 1
        self.check()

    def check(self):
        lc = self.lc
        assert lc.state in STATES or lc.state == IDLE
        # the shell's view of sockets and timers matches the machine's
        assert self.sockets == ({lc.socket_id} if lc.socket_id is not None else set())
        assert set(self.timers) == set(lc._timers)
        if lc.state in (OFFLINE, FAILED, IDLE):
            assert not self.timers, (lc.state, self.timers)
            assert lc.socket_id is None
        # never stuck: a live state always has a timer that moves it on
        if lc.state == CONNECTING:
            assert CONNECT_TIMER in self.timers and lc.socket_id is not None
        if lc.state == RECONNECTING:
            if lc.socket_id is None:
                assert RETRY_TIMER in self.timers
            elif lc.live:  # on probation
                assert L.PROBATION_TIMER in self.timers and HEARTBEAT_TIMER in self.timers
            else:
                assert CONNECT_TIMER in self.timers
        if lc.state == CONNECTED:
            assert HEARTBEAT_TIMER in self.timers and lc.socket_id is not None

    # -- a tiny discrete-event simulation with a scripted server ---------

    def run(self, until, server):
        """Advance to `until`, firing due timers and answering sockets.

        server(now, event) decides: for "open" returns "accept" or "refuse";
        for "ping" returns True to answer with a pong.
        """
        pending = []  # (time, seq, method, args)
        seq = [0]

        def later(dt, method, *args):
            seq[0] += 1
            pending.append((self.now + dt, seq[0], method, args))

        while True:
            for a in self.actions[self.answered:]:
                if isinstance(a, (OpenSocket, Send)) and a.socket_id not in self.sockets:
                    continue
                if isinstance(a, OpenSocket):
                    if server(self.now, "open") == "accept":
                        later(0.05, "opened", a.socket_id)
                        later(0.06, "joined", a.socket_id)  # the welcome answers hello
                    else:
                        later(0.05, "closed", a.socket_id, 1006, "", False)
                elif isinstance(a, Send) and a.frame.get("type") == "ping":
                    if server(self.now, "ping"):
                        later(0.02, "received", a.socket_id, {"type": "pong"})
            self.answered = len(self.actions)
            nxt = [(t, 0, n) for n, t in self.timers.items()] + [(p[0], 1, p) for p in pending]
            if not nxt:
                self.now = until
                return
            t, kind, item = min(nxt, key=lambda x: (x[0], x[1]))
            if t > until:
                self.now = until
                return
            self.now = max(self.now, t)
            if kind == 0:
                self.call("timer_fired", item)
            else:
                pending.remove(item)
                sid = item[3][0]
                if sid in self.sockets:  # the browser only reports on live sockets
                    self.call(item[2], *item[3])


def up(now, event):
    return "accept" if event == "open" else True


def down(now, event):
    return "refuse" if event == "open" else False


# ------------------------------------------------------------------ basics

def test_default_settings_detect_silent_socket_within_15s():
    """Defaults: ping_interval + dead_after (worst-case detection) is at most 15 s."""
    assert S.ping_interval + S.dead_after <= 15
    assert S.dead_after > S.ping_interval
    assert Settings().problems() == []


def test_start_actions():
    """start() opens socket 1, arms the connect timer and renders "connecting"."""
    lc = new()
    assert lc.state == IDLE
    assert lc.start(0.0) == [OpenSocket(1), StartTimer("connect", 5.0), Render("connecting")]
    assert (lc.state, lc.socket_id, lc.attempt) == (CONNECTING, 1, 0)


def test_start_twice_is_ignored():
    """A second start() does not open a second socket."""
    lc = new()
    lc.start(0.0)
    assert non_log(lc.start(1.0)) == []
    assert lc.socket_id == 1


def test_open_is_not_connected_until_welcome():
    """opened() only trades the connect timer for the welcome timer; joined() (the welcome) connects."""
    lc = new()
    lc.start(0.0)
    acts = lc.opened(0.2, 1)
    assert non_log(acts) == [CancelTimer("connect"), StartTimer("connect", S.welcome_timeout)]
    assert lc.state == CONNECTING and not lc.live
    acts = lc.joined(0.25, 1)
    assert acts == [CancelTimer("connect"), StartTimer("heartbeat", S.ping_interval),
                    Render("connected"), Log("debug", "chat: connected")]  # normal operation: a quiet console
    assert lc.state == CONNECTED and lc.live


def test_unexpected_server_close_reconnects_without_probe():
    """An established connection closed with 1006 schedules a jittered retry; no probe."""
    lc = connected(0.0)
    acts = lc.closed(2.0, 1, 1006, "", False)
    assert non_log(acts) == [CancelTimer("heartbeat"), StartTimer("retry", d(1)),
                             Render(RECONNECTING, 1, 2.0 + d(1), None)]
    assert of(acts, Log) == [Log("info", "chat: connection lost (code 1006); reconnecting")]
    assert lc.state == RECONNECTING and lc.socket_id is None and lc.attempt == 1


def test_retry_timer_opens_new_socket_and_stays_reconnecting():
    """When the retry fires a new socket opens; the visible state stays "reconnecting"."""
    lc = connected(0.0)
    lc.closed(10.0, 1, 1006, "", False)
    acts = lc.timer_fired(10.0 + d(1), "retry")
    assert non_log(acts) == [OpenSocket(2), StartTimer("connect", S.connect_timeout),
                             Render(RECONNECTING, 1, None, None)]
    assert all(a.level == "debug" for a in of(acts, Log))
    lc.opened(12.0, 2)
    assert lc.joined(12.0, 2)[2] == Render(CONNECTED)


def test_handshake_failure_probes_and_counts_attempts():
    """A close before open probes the server on the first failure and when the alert appears, not on every one."""
    lc = new()
    lc.start(0.0)
    acts = lc.closed(0.1, 1, 1006, "", False)
    assert of(acts, ProbeServer) == [ProbeServer()]
    assert of(acts, Log)[0].level == "info"  # first failure is worth one info line
    t = 0.1 + d(1)
    lc.timer_fired(t, "retry")
    acts = lc.closed(t + 0.1, 2, 1006, "", False)
    assert of(acts, ProbeServer) == []
    assert [a.level for a in of(acts, Log)] == ["debug"]  # repeated failures: debug only
    assert lc.attempt == 2
    t = lc.retry_at
    lc.timer_fired(t, "retry")
    acts = lc.closed(t + 0.1, 3, 1006, "", False)
    assert lc.attempt == 3 == lc.settings.alert_after
    assert of(acts, ProbeServer) == [ProbeServer()]


def test_alert_unreachable_after_alert_after_failures():
    """Render carries alert "unreachable" from the alert_after-th consecutive failure on."""
    sh = Harness(new())
    sh.call("start")
    sh.run(200.0, down)
    recon = [r for r in sh.renders if r.state == RECONNECTING and r.retry_at is not None]
    assert [r.attempt for r in recon[:5]] == [1, 2, 3, 4, 5]
    assert [r.alert for r in recon[:5]] == [None, None, "unreachable", "unreachable", "unreachable"]
    assert sh.lc.state == RECONNECTING  # it keeps trying


def test_server_down_then_up_reconnects_with_bounded_attempts():
    """While the server is down attempts are paced by backoff; when it returns, we connect."""
    sh = Harness(new(random=stdlib_random.Random(5).random))
    sh.call("start")
    sh.run(120.0, down)
    opens = of(sh.actions, OpenSocket)
    # ceilings 0.75,1.5,3,6,12,24,30,...: far fewer than one attempt per second
    assert 5 <= len(opens) <= 40
    sh.run(120.0 + 2 * S.backoff_cap + S.connect_timeout, up)
    assert sh.lc.state == CONNECTED


def test_retry_at_matches_timer():
    """Render.retry_at is now + the retry timer's delay (for a countdown)."""
    lc = connected(0.0)
    acts = lc.closed(3.0, 1, 1001, "", True)
    assert renders(acts)[0].retry_at == 3.0 + timer(acts, "retry")


# ------------------------------------------------------- attempt counter

def test_attempt_resets_only_after_stable_uptime():
    """A connection that stayed up >= stable_after resets the counter when it ends."""
    sh = Harness(new())
    sh.call("start")
    sh.run(20.0, down)
    assert sh.lc.attempt >= 3
    sh.run(60.0, up)
    assert sh.lc.state == CONNECTED and sh.lc.attempt >= 3  # not reset on open
    opened_at = sh.lc._opened_at
    sh.now = opened_at + S.stable_after + 1
    acts = sh.call("closed", sh.lc.socket_id, 1006, "", False)
    assert sh.lc.attempt == 1
    assert timer(acts, "retry") == d(1)
    assert renders(acts)[0].alert is None


def test_accept_then_drop_keeps_growing_delays():
    """A server that accepts then drops at once gets ever longer retry delays, up to the cap."""
    lc = new(random=lambda: 0.999)
    lc.start(0.0)
    t, sid, delays = 0.0, 1, []
    for _ in range(10):
        lc.opened(t + 0.05, sid)
        acts = lc.closed(t + 0.1, sid, 1000, "", True)
        assert of(acts, ProbeServer) == []  # it did open: nothing to probe
        delays.append(timer(acts, "retry"))
        t = t + 0.1 + delays[-1]
        sid = of(lc.timer_fired(t, "retry"), OpenSocket)[0].socket_id
    assert lc.attempt == 10
    assert all(b > a for a, b in zip(delays, delays[1:7]))
    assert delays[-1] > 0.9 * S.backoff_cap
    assert sum(delays) > 100  # not a tight loop


def test_uptime_just_below_stable_does_not_reset():
    """A connection that lasted slightly less than stable_after keeps counting."""
    lc = connected(0.0)
    lc.closed(1.0, 1, 1006, "", False)
    lc.timer_fired(2.0, "retry")
    lc.opened(2.0, 2)
    lc.closed(2.0 + S.stable_after - 0.01, 2, 1006, "", False)
    assert lc.attempt == 2


# -------------------------------------------------------- connect timeout

def test_connect_timeout_closes_4100_and_takes_failure_path():
    """No open within connect_timeout: close 4100 "connect timeout", probe, retry with backoff."""
    lc = new()
    lc.start(0.0)
    acts = lc.timer_fired(5.0, "connect")
    assert non_log(acts) == [CloseSocket(1, 4100, "connect timeout"), StartTimer("retry", d(1)),
                             Render(RECONNECTING, 1, 5.0 + d(1), None), ProbeServer()]
    assert lc.socket_id is None and lc.attempt == 1
    # the browser's later close/open for the abandoned socket are stale
    assert lc.closed(5.1, 1, 4100, "connect timeout", True) == []
    assert lc.opened(5.2, 1) == []
    assert lc.state == RECONNECTING


def test_connect_timer_cancelled_by_open():
    """After open, a late connect-timer callback changes nothing."""
    lc = connected(0.0)
    acts = lc.timer_fired(5.0, "connect")
    assert non_log(acts) == [] and lc.state == CONNECTED


# -------------------------------------------------------------- heartbeat

def test_heartbeat_pings_and_rearms():
    """Each heartbeat tick with a live socket sends a ping and restarts the timer."""
    lc = connected(0.0)
    assert lc.timer_fired(4.0, "heartbeat") == [Send(1, {"type": "ping", "t": 4.0}),
                                                StartTimer("heartbeat", S.ping_interval)]
    assert lc.received(4.05, 1, {"type": "pong"}) == []
    assert non_log(lc.timer_fired(8.0, "heartbeat"))[0] == Send(1, {"type": "ping", "t": 8.0})


def test_healthy_connection_stays_up_for_an_hour():
    """With a server that answers pings, no false death over an hour of ticks."""
    sh = Harness(new())
    sh.call("start")
    sh.run(3600.0, up)
    assert sh.lc.state == CONNECTED and of(sh.actions, CloseSocket) == []
    assert len(of(sh.actions, OpenSocket)) == 1


def test_silent_socket_detected_within_15s():
    """A socket that goes silent is declared dead (close 4101) within 15 s of its last frame."""
    for phase in (0.0, 0.5, 1.0, 2.0, 3.9):
        sh = Harness(new())
        sh.call("start")
        sh.run(20.0 + phase, up)
        last_rx = sh.lc._last_rx
        sh.run(60.0, lambda now, ev: "accept" if ev == "open" else False)  # stops answering
        close = [a for a in sh.actions if isinstance(a, CloseSocket)][0]
        assert close.code == 4101 and close.reason == "heartbeat timeout"
        death = [r for r in sh.renders if r.state == RECONNECTING][0]
        assert death.retry_at - d(1) - last_rx <= 15.0


def test_dead_exactly_by_wall_clock():
    """Death needs more than dead_after of silence, judged from `now`, not tick counts."""
    lc = connected(0.0)
    lc.timer_fired(4.0, "heartbeat")   # ping, unanswered
    lc.timer_fired(8.0, "heartbeat")
    assert lc.state == CONNECTED
    acts = lc.timer_fired(10.0 + 0.001, "heartbeat")
    assert acts[0] == CloseSocket(1, 4101, "heartbeat timeout")
    assert lc.state == RECONNECTING


def test_late_tick_with_unanswered_ping_detects_death_at_once():
    """A throttled tick arriving 60 s late after an unanswered ping closes the socket at once."""
    lc = connected(0.0)
    lc.timer_fired(4.0, "heartbeat")   # ping sent, never answered
    acts = lc.timer_fired(64.0, "heartbeat")
    assert acts[0] == CloseSocket(1, 4101, "heartbeat timeout")
    assert timer(acts, "retry") is not None


def test_late_tick_on_healthy_throttled_socket_pings_instead_of_killing():
    """If our own timer slept (last ping was answered), a late tick pings rather than kills."""
    lc = connected(0.0)
    lc.timer_fired(4.0, "heartbeat")
    lc.received(4.05, 1, {"type": "pong"})
    acts = lc.timer_fired(64.0, "heartbeat")  # silent 60 s, but nothing was asked
    assert acts == [Send(1, {"type": "ping", "t": 64.0}), StartTimer("heartbeat", S.ping_interval)]
    # ... and if that ping is not answered, the next (late) tick declares death at once
    assert lc.timer_fired(124.0, "heartbeat")[0] == CloseSocket(1, 4101, "heartbeat timeout")


def test_any_frame_counts_as_liveness():
    """Non-pong frames keep the connection alive too."""
    lc = connected(0.0)
    t = 0.0
    for _ in range(10):
        t += 4.0
        lc.timer_fired(t, "heartbeat")
        lc.received(t + 1.0, 1, {"type": "message", "text": "hi"})
    assert lc.state == CONNECTED


def test_heartbeat_death_after_long_uptime_resets_attempt():
    """Dying after a long proven-alive uptime counts as a fresh failure (attempt 1)."""
    lc = connected(0.0)
    lc.attempt = 4  # earlier failures before this connection
    lc.received(100.0, 1, {"type": "pong"})
    lc.timer_fired(104.0, "heartbeat")
    acts = lc.timer_fired(112.0, "heartbeat")
    assert acts[0].code == 4101 and lc.attempt == 1


def test_heartbeat_death_of_socket_silent_since_open_keeps_counting():
    """A socket accepted but silent from the start is not 'stable': the counter grows."""
    lc = connected(0.0)
    lc.attempt = 4
    lc.timer_fired(4.0, "heartbeat")
    lc.timer_fired(8.0, "heartbeat")
    lc.timer_fired(12.0, "heartbeat")
    assert lc.attempt == 5


# ---------------------------------------------------------- server beats

BEATS = (5.0, 300.0)  # the server's defaults: a beat every 5 s, idle timeout 300 s


def beaten(until, beat_offset=0.0, dies_at=None, heartbeat=BEATS, late=None):
    """Run a connection welcomed at 0 with ``heartbeat`` against a server that beats every interval from
    ``beat_offset``, answers pings after 0.05 s, and goes silent for good at ``dies_at``; ``late``: a map
    from a beat's number to seconds it is late. Returns (machine, pings sent as (time), death time or None,
    last frame before death)."""
    lc = new()
    lc.start(0.0)
    lc.opened(0.0, 1)
    acts = lc.joined(0.0, 1, heartbeat)
    tick = timer(acts, "heartbeat")
    pings, frames_at, n = [], [], 0
    late = late or {}
    beats = []
    t = beat_offset
    while t < until:
        beats.append(t + late.get(n, 0.0))
        n += 1
        t = beat_offset + n * heartbeat[0]
    events = [(b, "beat") for b in beats]
    events.append((tick, "tick"))
    while events:
        events.sort()
        now, what = events.pop(0)
        if now > until:
            break
        alive = dies_at is None or now < dies_at
        if what in ("beat", "pong"):
            if alive:
                lc.received(now, 1, {"type": what})
                frames_at.append(now)
            continue
        acts = lc.timer_fired(now, "heartbeat")
        if of(acts, CloseSocket):
            return lc, pings, now, frames_at[-1] if frames_at else 0.0
        for send in of(acts, Send):
            pings.append(now)
            events.append((now + 0.05, "pong"))
        events.append((now + timer(acts, "heartbeat"), "tick"))
    return lc, pings, None, frames_at[-1] if frames_at else 0.0


def test_a_welcome_with_heartbeat_stops_the_pinging_while_beats_arrive_on_time():
    """A server that beats every 5 s: no ping at all for 90 s (the keepalive is 100 s away), connected."""
    for offset in (0.0, 1.3, 2.5, 4.9):
        lc, pings, died, _ = beaten(90.0, offset)
        assert pings == [] and died is None and lc.state == CONNECTED, offset


def test_a_late_beat_costs_one_ping_never_a_false_death():
    """A beat missing for 10 s (the next one is on time): exactly one ping, at the first tick more than
    6 s after the last beat; it is answered and the connection stays up."""
    for offset in (0.5, 1.5, 2.5, 3.5):
        lc, pings, died, _ = beaten(60.0, offset, late={4: BEATS[0]})
        assert died is None and lc.state == CONNECTED
        assert len(pings) == 1 and offset + 21.0 < pings[0] < offset + 25.0, (offset, pings)


def test_a_beat_within_the_margin_costs_nothing():
    """A beat 0.9 s late is within beat_margin (1 s): no ping."""
    for offset in (0.0, 1.0, 2.0, 3.0):
        assert beaten(60.0, offset, late={4: 0.9})[1] == [], offset


def test_keepalive_pings_every_third_of_the_idle_timeout():
    """Beats do not reset the server's idle timeout (only the widget's frames do): a ping every
    idle_timeout / 3 = 100 s (at the first tick after it), and never a gap the idle timeout would close."""
    lc, pings, died, _ = beaten(1000.0, 2.0)
    assert died is None and lc.state == CONNECTED
    gaps = [b - a for a, b in zip([0.0] + pings, pings)]
    assert len(pings) == 10 and all(100.0 <= gap < 100.0 + S.ping_interval for gap in gaps), gaps
    assert 1000.0 - pings[-1] < 300.0


def test_with_beats_a_silent_dead_socket_is_still_found_within_14s_at_every_phase():
    """The path dies right after a beat, at every phase of the widget's tick against the beats, and at
    several points of the connection's life: closed 4101 at most ping_interval + dead_after = 14 s after
    the last frame (the bound without beats), never sooner than dead_after."""
    worst = 0.0
    for tenths in range(50):
        offset = tenths / 10.0
        for dies_after_beat in (2, 3, 7, 20):
            last_beat = offset + dies_after_beat * BEATS[0]
            lc, pings, died, last_rx = beaten(200.0, offset, dies_at=last_beat + 0.001)
            assert died is not None and lc.state == RECONNECTING, (offset, dies_after_beat)
            assert last_rx == last_beat
            assert S.dead_after < died - last_rx <= S.ping_interval + S.dead_after, (offset, died - last_rx)
            worst = max(worst, died - last_rx)
    assert worst > 13.5  # the bound is reached, so the test would see it stretched


def test_a_server_announcing_a_long_interval_cannot_stretch_detection():
    """An interval of 60 s: the widget still pings after 6 s of silence (dead_after - ping_interval), so a
    silent socket is found within 14 s."""
    for tenths in range(0, 40, 3):
        offset = tenths / 10.0
        lc, pings, died, last_rx = beaten(200.0, offset, dies_at=offset + 0.001, heartbeat=(60.0, 300.0))
        assert died is not None and died - last_rx <= S.ping_interval + S.dead_after, offset


def test_without_heartbeat_in_the_welcome_the_widget_pings_every_tick():
    """An older server (or the HTTP fallback): a ping every 4 s even while other frames keep arriving."""
    lc = connected(0.0)
    for n in range(1, 6):
        lc.received(n * 4.0 - 1.0, 1, {"type": "beat"})
        assert of(lc.timer_fired(n * 4.0, "heartbeat"), Send) == [Send(1, {"type": "ping", "t": n * 4.0})]


def test_a_new_socket_starts_from_its_own_welcome():
    """Beats announced on one socket say nothing of the next one: after a reconnect to a server without
    the field, the widget pings every tick again; a handover to a beating socket stops the pinging."""
    lc = new()
    lc.start(0.0)
    lc.opened(0.0, 1)
    lc.joined(0.0, 1, BEATS)
    lc.closed(10.0, 1, 1006, "", False)
    retry_at = lc.retry_at
    lc.timer_fired(retry_at, "retry")
    lc.opened(retry_at + 0.1, 2)
    joined_at = retry_at + 0.2
    lc.joined(joined_at, 2)
    assert of(lc.timer_fired(joined_at + 4.0, "heartbeat"), Send)
    lc.handover(joined_at + 5.0, "trial", BEATS)
    assert of(lc.timer_fired(joined_at + 8.0, "heartbeat"), Send) == []


# ------------------------------------------------------- close-code policy

@pytest.mark.parametrize("code", [1000, 1001, 1005, 1006, 1011, 1002, 1003, 1007, 1014, 1015,
                                  3000, 4100, 4999])
def test_close_codes_that_reconnect_with_backoff(code):
    """Normal/unknown close codes reconnect with the ordinary jittered backoff."""
    lc = connected(0.0)
    acts = lc.closed(1.0, 1, code, "", code != 1006)
    assert lc.state == RECONNECTING
    assert timer(acts, "retry") == d(1)
    assert renders(acts)[0] == Render(RECONNECTING, 1, 1.0 + d(1), None)


def test_close_1012_service_restart_small_jittered_delay():
    """1012 after a stable connection: small jittered delay (first-attempt ceiling), "draining"."""
    delays = set()
    for r in (0.0, 0.3, 0.7, 0.99):
        lc = connected(0.0, random=lambda r=r: r)
        lc.attempt = 6
        acts = lc.closed(600.0, 1, 1012, "restart", True)
        delays.add(timer(acts, "retry"))
        assert renders(acts)[0].alert == "draining"
    assert max(delays) <= S.backoff_base and min(delays) >= FLOOR and len(delays) == 4


def test_close_1013_uses_longer_delay():
    """1013 (try again later) waits longer than any normal delay for the same attempt."""
    lc = connected(0.0, random=lambda: 0.0)
    acts = lc.closed(100.0, 1, 1013, "", True)
    assert timer(acts, "retry") >= ceiling(1, S.backoff_base, S.backoff_cap)
    assert timer(acts, "retry") == d(1, slow=True, r=0.0)
    assert renders(acts)[0].alert == "draining"


@pytest.mark.parametrize("code,alert", [(close.BUSY, close.STORE_BUSY), (close.LIMITED, close.ADDRESS_LIMITED)])
def test_refusals_of_a_new_conversation_retry_later_and_say_why(code, alert):
    """4201/4202 come right after hello (open, no welcome): retried with the slow delay, no probe and no
    interference; the alert and last_failure name the server's reason until a welcome."""
    lc = new(random=lambda: 0.0)
    lc.start(0.0)
    lc.opened(0.1, 1)
    acts = lc.closed(0.2, 1, code, "", True)
    assert timer(acts, "retry") == d(1, slow=True, r=0.0)
    assert renders(acts) == [Render(RECONNECTING, 1, 0.2 + d(1, slow=True, r=0.0), alert)]
    assert lc.last_failure == alert and lc.interference is None and not of(acts, ProbeServer)
    lc.timer_fired(lc.retry_at, "retry")
    assert lc.alert == alert  # still said while the next attempt is in flight
    lc.opened(30.0, 2)
    acts = lc.closed(30.1, 2, code, "", True)
    assert timer(acts, "retry") == d(2, slow=True, r=0.0) and renders(acts)[0].alert == alert
    lc.timer_fired(lc.retry_at, "retry")
    lc.opened(100.0, 3)
    assert renders(lc.joined(100.0, 3)) == [Render(CONNECTED)]
    lc.closed(200.0, 3, 1006, "", False)
    assert lc.last_failure == close.UNREACHABLE and lc.alert is None  # the welcome cleared it


def test_store_unavailable_retries_with_normal_backoff_and_says_so_until_a_welcome():
    """4203 (the server's shared store is down, e.g. Redis restarting) closes any connection, joined or
    not: retried with the normal delay (such trouble lasts seconds), saying "temporary problem"."""
    lc = connected(0.0, random=lambda: 0.0)
    acts = lc.closed(5.0, 1, close.UNAVAILABLE, "store down", True)
    assert timer(acts, "retry") == d(1, r=0.0)
    assert renders(acts)[0].alert == close.STORE_UNAVAILABLE and lc.last_failure == close.STORE_UNAVAILABLE
    lc.timer_fired(lc.retry_at, "retry")
    lc.opened(6.0, 2)
    acts = lc.closed(6.1, 2, close.UNAVAILABLE, "", True)
    assert timer(acts, "retry") == d(2, r=0.0) and renders(acts)[0].alert == close.STORE_UNAVAILABLE
    lc.timer_fired(lc.retry_at, "retry")
    lc.opened(20.0, 3)
    assert renders(lc.joined(20.0, 3)) == [Render(CONNECTED)] and lc.alert is None


def test_the_servers_reason_is_cleared_and_replaced_as_draining_was():
    """Going online clears it; a probe saying draining replaces it; a probe saying ok clears it."""
    lc = new()
    lc.start(0.0)
    lc.opened(0.1, 1)
    lc.closed(0.2, 1, close.BUSY, "", True)
    lc.went_offline(1.0)
    lc.went_online(2.0)
    lc.closed(2.1, 2, 1006, "", False)
    assert lc.last_failure == close.UNREACHABLE and lc.alert is None
    lc = new()
    lc.start(0.0)
    lc.opened(0.1, 1)
    lc.closed(0.2, 1, close.LIMITED, "", True)
    lc.timer_fired(lc.retry_at, "retry")
    acts = lc.closed(lc.retry_at or 50.0, 2, 1006, "", False)  # refused before open: probed
    assert of(acts, ProbeServer) and renders(acts)[0].alert == close.ADDRESS_LIMITED
    assert lc.probe_result(51.0, close.PROBE_UNREACHABLE) == []  # keeps saying what the server said
    assert renders(lc.probe_result(51.1, close.PROBE_DRAINING))[0].alert == close.DRAINING
    assert renders(lc.probe_result(51.2, close.PROBE_OK))[0].alert is None
    lc = connected(0.0)
    lc.closed(1.0, 1, close.BUSY, "", True)
    lc.timer_fired(lc.retry_at, "retry")
    lc.opened(20.0, 2)
    lc.closed(20.1, 2, 1008, "", True)  # terminal, with "busy" still said from before
    assert lc.state == FAILED
    lc.retry_pressed(30.0)
    lc.closed(30.1, 3, 1006, "", False)
    assert lc.last_failure == close.UNREACHABLE


@pytest.mark.parametrize("code,alert", [(1008, "policy"), (1009, "too_big"), (4000, "protocol"),
                                        (4042, "protocol"), (4099, "protocol")])
def test_terminal_close_codes(code, alert):
    """1008, 1009 and 4000-4099 from the server are terminal: FAILED, no timers, no retry."""
    lc = connected(0.0)
    acts = lc.closed(1.0, 1, code, "nope", True)
    assert non_log(acts) == [CancelTimer("heartbeat"), Render(FAILED, 0, None, alert)]
    assert of(acts, Log)[0].level == "warn"
    assert lc.state == FAILED and lc._timers == {}
    for name in L.TIMERS:
        assert of(lc.timer_fired(2.0, name), OpenSocket) == []
    assert of(lc.went_online(3.0), OpenSocket) == []
    assert of(lc.page_visible(4.0), OpenSocket) == []
    assert lc.state == FAILED


def test_own_close_then_browser_close_is_stale():
    """After we emit CloseSocket the socket is not current; its close event is ignored."""
    lc = connected(0.0)
    lc.went_offline(1.0)
    assert lc.closed(1.1, 1, 1000, "offline", True) == []
    assert lc.state == OFFLINE


def test_classify_close_table():
    """classify_close maps codes to retry / slow / fail as documented."""
    assert close.classify(1006) == (close.RETRY, None)
    assert close.classify(1012) == (close.RETRY, "draining")
    assert close.classify(1013) == (close.SLOW, "draining")
    assert close.classify(1008) == (close.FAIL, "policy")
    assert close.classify(4100) == (close.RETRY, None)
    assert close.classify(None) == (close.RETRY, None)
    assert close.classify(4201) == (close.SLOW, "busy")
    assert close.classify(4202) == (close.SLOW, "limited")
    assert close.classify(4203) == (close.RETRY, "unavailable")
    for code in (4200, 4250, 4299):  # a temporary refusal this widget does not know: busy, retry later
        assert close.classify(code) == (close.SLOW, close.STORE_BUSY)
    for code in (4199, 4300):
        assert close.classify(code) == (close.RETRY, None)
    assert set(close.FAILURES) >= {close.STORE_BUSY, close.ADDRESS_LIMITED}


# ---------------------------------------------------------------- offline

def test_offline_from_connected():
    """went_offline closes the socket with 1000, cancels timers and renders offline."""
    lc = connected(0.0)
    acts = lc.went_offline(1.0)
    assert non_log(acts) == [CloseSocket(1, 1000, "offline"), CancelTimer("heartbeat"),
                             Render(OFFLINE)]
    assert lc.state == OFFLINE and lc.socket_id is None


def test_offline_from_reconnecting_stops_attempts():
    """Offline cancels the pending retry; a late retry callback does not open a socket."""
    lc = connected(0.0)
    lc.closed(1.0, 1, 1006, "", False)
    acts = lc.went_offline(1.1)
    assert CancelTimer("retry") in acts and renders(acts) == [Render(OFFLINE)]
    assert of(lc.timer_fired(5.0, "retry"), OpenSocket) == []
    assert lc.state == OFFLINE


def test_offline_with_attempt_in_flight():
    """Offline during a connection attempt closes that socket and its connect timer."""
    lc = new()
    lc.start(0.0)
    acts = lc.went_offline(0.5)
    assert non_log(acts) == [CloseSocket(1, 1000, "offline"), CancelTimer("connect"),
                             Render(OFFLINE)]


def test_online_attempts_immediately_with_reset_counter():
    """went_online from offline opens a socket at once, with the attempt counter reset."""
    sh = Harness(new())
    sh.call("start")
    sh.run(30.0, down)
    assert sh.lc.attempt >= 3
    sh.call("went_offline")
    sh.now = 100.0
    acts = sh.call("went_online")
    assert of(acts, OpenSocket) == [OpenSocket(sh.lc.socket_id)]
    assert renders(acts) == [Render(RECONNECTING, 0, None, None)]
    assert sh.lc.attempt == 0


def test_offline_twice_and_online_when_not_offline():
    """Repeated offline is a no-op; online while connected is a no-op."""
    lc = connected(0.0)
    assert lc.went_online(0.5) == []
    lc.went_offline(1.0)
    assert lc.went_offline(1.5) == []


def test_offline_while_failed_stays_failed():
    """Offline does not leave the terminal FAILED state, nor does online."""
    lc = connected(0.0)
    lc.closed(1.0, 1, 1008, "", True)
    assert lc.went_offline(2.0) == [] and lc.state == FAILED
    assert lc.went_online(3.0) == [] and lc.state == FAILED


def test_offline_before_start_starts_offline():
    """If the browser is already offline at start(), render offline and open nothing."""
    lc = new()
    lc.went_offline(0.0)
    acts = lc.start(0.1)
    assert of(acts, OpenSocket) == [] and renders(acts) == [Render(OFFLINE)]
    assert of(lc.went_online(1.0), OpenSocket) == [OpenSocket(1)]


# ------------------------------------------------------------- visibility

def test_hidden_page_slows_retry_pacing():
    """While hidden, retry delays are at least hidden_delay/2 (jittered slow pacing)."""
    lc = connected(0.0, random=stdlib_random.Random(3).random)
    lc.page_hidden(1.0)
    acts = lc.closed(2.0, 1, 1006, "", False)
    delay = timer(acts, "retry")
    assert S.hidden_delay / 2 <= delay <= S.hidden_delay


def test_hidden_pacing_never_shortens_a_slow_delay():
    """Hidden pacing takes the longer of the backoff and the pacing delay."""
    lc = connected(0.0, random=lambda: 0.99, hidden_delay=2.0)
    lc.page_hidden(1.0)
    acts = lc.closed(100.0, 1, 1013, "", True)
    assert timer(acts, "retry") == d(1, slow=True, r=0.99) > 2.0  # slow delay wins
    lc = connected(0.0, random=lambda: 0.99)
    lc.page_hidden(1.0)
    acts = lc.closed(100.0, 1, 1013, "", True)
    assert timer(acts, "retry") == 30.0 * (0.5 + 0.5 * 0.99)  # hidden pacing wins


def test_visible_while_waiting_attempts_now():
    """page_visible while waiting on the retry timer cancels it and attempts at once."""
    lc = connected(0.0)
    lc.page_hidden(0.5)
    lc.closed(1.0, 1, 1006, "", False)
    acts = lc.page_visible(2.0)
    assert non_log(acts) == [CancelTimer("retry"), OpenSocket(2),
                             StartTimer("connect", S.connect_timeout),
                             Render(RECONNECTING, 1, None, None)]


def test_visible_while_attempt_in_flight_does_nothing():
    """page_visible during a connection attempt leaves it alone."""
    lc = new()
    lc.start(0.0)
    assert lc.page_visible(1.0) == []


def test_visible_while_connected_verifies_with_ping():
    """page_visible while connected sends a ping and arms the verify timer; a frame cancels it."""
    lc = connected(0.0)
    lc.page_hidden(1.0)
    acts = lc.page_visible(3.0)
    assert acts == [Send(1, {"type": "ping", "t": 3.0}), StartTimer("verify", S.verify_timeout)]
    assert lc.received(3.1, 1, {"type": "pong"}) == [CancelTimer("verify")]
    assert lc.state == CONNECTED


def test_verify_timeout_is_death():
    """No frame within verify_timeout after becoming visible: closed 4101, reconnecting."""
    lc = connected(0.0)
    lc.page_visible(3.0)
    acts = lc.timer_fired(3.0 + S.verify_timeout, "verify")
    assert acts[0] == CloseSocket(1, 4101, "heartbeat timeout")
    assert CancelTimer("heartbeat") in acts and lc.state == RECONNECTING


def test_visible_after_long_silence_with_unanswered_ping_is_dead_at_once():
    """Visible after a long silence during which our ping went unanswered: dead immediately."""
    lc = connected(0.0)
    lc.page_hidden(1.0)
    lc.timer_fired(4.0, "heartbeat")  # ping never answered (throttled tab: next tick much later)
    acts = lc.page_visible(40.0)
    assert acts[0] == CloseSocket(1, 4101, "heartbeat timeout")
    assert lc.state == RECONNECTING


def test_visible_after_long_silence_without_pending_ping_verifies():
    """Silence only because our timers slept: verify with a ping instead of killing."""
    lc = connected(0.0)
    lc.timer_fired(4.0, "heartbeat")
    lc.received(4.1, 1, {"type": "pong"})
    acts = lc.page_visible(40.0)
    assert acts == [Send(1, {"type": "ping", "t": 40.0}), StartTimer("verify", S.verify_timeout)]


# ------------------------------------------------------------ retry button

def test_retry_pressed_while_waiting():
    """The retry button while waiting cancels the retry timer and attempts now."""
    lc = connected(0.0)
    lc.closed(1.0, 1, 1006, "", False)
    acts = lc.retry_pressed(1.1)
    assert non_log(acts)[:2] == [CancelTimer("retry"), OpenSocket(2)]
    assert lc.attempt == 1


def test_retry_pressed_from_failed_restarts_and_keeps_count():
    """The retry button leaves FAILED with a fresh attempt; the failure count is kept."""
    lc = new()
    lc.start(0.0)
    lc.closed(0.1, 1, 1006, "", False)
    lc.probe_result(0.2, "origin_rejected")
    assert lc.state == FAILED
    acts = lc.retry_pressed(10.0)
    assert non_log(acts) == [OpenSocket(2), StartTimer("connect", S.connect_timeout),
                             Render(RECONNECTING, 1, None, None)]
    assert lc.state == RECONNECTING and lc.attempt == 1


@pytest.mark.parametrize("setup", ["connecting", "connected", "offline", "in_flight"])
def test_retry_pressed_ignored_elsewhere(setup):
    """The retry button does nothing while connecting, connected, offline or mid-attempt."""
    lc = new()
    lc.start(0.0)
    if setup == "connected":
        lc.opened(0.1, 1)
    elif setup == "offline":
        lc.went_offline(0.1)
    elif setup == "in_flight":
        lc.closed(0.1, 1, 1006, "", False)
        lc.timer_fired(1.0, "retry")
    state, sid = lc.state, lc.socket_id
    assert non_log(lc.retry_pressed(2.0)) == []
    assert (lc.state, lc.socket_id) == (state, sid)


def test_retry_pressed_in_failed_while_offline_goes_offline():
    """Retry from FAILED while the browser is offline waits for the network instead."""
    lc = connected(0.0)
    lc.closed(1.0, 1, 1008, "", True)
    lc.went_offline(2.0)
    acts = lc.retry_pressed(3.0)
    assert of(acts, OpenSocket) == [] and lc.state == OFFLINE
    assert of(lc.went_online(4.0), OpenSocket) == [OpenSocket(2)]


# ------------------------------------------------------------------ probe

def test_probe_origin_rejected_is_terminal():
    """Probe says origin rejected: FAILED with alert "origin", retry timer cancelled."""
    lc = new()
    lc.start(0.0)
    lc.closed(0.1, 1, 1006, "", False)
    acts = lc.probe_result(0.2, "origin_rejected")
    assert non_log(acts) == [CancelTimer("retry"), Render(FAILED, 1, None, "origin")]
    assert lc.state == FAILED and lc._timers == {}


def test_probe_origin_rejected_with_attempt_in_flight_closes_it():
    """A late origin_rejected result while a new attempt is in flight closes that socket."""
    lc = new()
    lc.start(0.0)
    lc.closed(0.1, 1, 1006, "", False)
    lc.timer_fired(1.0, "retry")
    acts = lc.probe_result(1.1, "origin_rejected")
    assert non_log(acts) == [CloseSocket(2, 1000, "origin rejected"), CancelTimer("connect"),
                             Render(FAILED, 1, None, "origin")]
    assert lc.opened(1.2, 2) == []


def test_probe_draining_updates_alert_only():
    """Probe says draining: stay reconnecting with alert "draining"; "ok" clears it."""
    lc = new()
    lc.start(0.0)
    acts = lc.closed(0.1, 1, 1006, "", False)
    retry_at = renders(acts)[0].retry_at
    assert lc.probe_result(0.2, "draining") == [Render(RECONNECTING, 1, retry_at, "draining")]
    assert lc.state == RECONNECTING and RETRY_TIMER in lc._timers
    assert lc.probe_result(0.3, "draining") == []
    assert lc.probe_result(0.4, "unreachable") == []  # restarting servers are briefly unreachable
    assert lc.probe_result(0.5, "ok") == [Render(RECONNECTING, 1, retry_at, None)]


@pytest.mark.parametrize("result", ["ok", "unreachable"])
def test_probe_ok_or_unreachable_changes_nothing(result):
    """Probe "ok"/"unreachable" changes neither the state nor the retry schedule."""
    lc = new()
    lc.start(0.0)
    acts = lc.closed(0.1, 1, 1006, "", False)
    retry_at = renders(acts)[0].retry_at
    assert all(a == Render(RECONNECTING, 1, retry_at, None) for a in lc.probe_result(0.2, result))
    assert lc.state == RECONNECTING and lc.retry_at == retry_at


def test_alert_says_interference_when_http_works_but_sockets_fail():
    """Health reachable over HTTP while every socket attempt fails: the alert blames a proxy, not the server."""
    lc = new()
    lc.start(0.0)
    lc.closed(0.1, 1, 1006, "", False)
    lc.probe_result(0.2, "ok")
    for n in (2, 3):
        lc.timer_fired(lc.retry_at, "retry")
        acts = lc.closed(lc.retry_at + 0.1 if lc.retry_at else 10.0 * n, n, 1006, "", False)
    assert renders(acts)[-1].alert == "interference"
    assert lc.interference == L.REFUSED
    assert renders(lc.probe_result(20.0, "unreachable"))[-1].alert == "unreachable"


def test_probe_result_while_connected_is_ignored():
    """A stale probe result after we connected does not fail the working connection."""
    lc = new()
    lc.start(0.0)
    lc.closed(0.1, 1, 1006, "", False)
    lc.timer_fired(1.0, "retry")
    lc.opened(1.1, 2)
    assert non_log(lc.probe_result(1.2, "origin_rejected")) == []
    lc.joined(1.15, 2)
    assert lc.state == CONNECTED


def test_unknown_probe_result_and_timer_raise():
    """Programming errors (unknown probe result / timer name) raise ValueError."""
    lc = connected(0.0)
    with pytest.raises(ValueError):
        lc.probe_result(1.0, "maybe")
    with pytest.raises(ValueError):
        lc.timer_fired(1.0, "nope")


# ------------------------------------------------------ stale / impossible

def test_stale_socket_events_are_ignored():
    """Events for a socket that is no longer current return no actions."""
    lc = connected(0.0)
    lc.timer_fired(4.0, "heartbeat")
    lc.timer_fired(8.0, "heartbeat")
    lc.timer_fired(12.0, "heartbeat")  # dead: socket 1 closed by us
    lc.timer_fired(20.0, "retry")      # socket 2 in flight
    assert lc.socket_id == 2
    assert lc.opened(20.1, 1) == []
    assert lc.received(20.1, 1, {"type": "pong"}) == []
    assert lc.closed(20.1, 1, 1006, "", False) == []
    assert lc.errored(20.1, 1) == []
    assert lc.opened(20.1, 99) == []
    assert lc.state == RECONNECTING and lc.socket_id == 2


def test_duplicate_open_is_ignored_gracefully():
    """opened() again for the current, already-open socket only logs at debug level."""
    lc = connected(0.0)
    acts = lc.opened(1.0, 1)
    assert [a.level for a in acts] == ["debug"] and lc.state == CONNECTED


def test_frame_before_open_is_ignored():
    """A frame reported before open (impossible race) is ignored with a debug log."""
    lc = new()
    lc.start(0.0)
    assert [a.level for a in lc.received(0.1, 1, {"type": "pong"})] == ["debug"]


def test_error_event_only_logs_debug():
    """The browser 'error' event has no action of its own."""
    lc = connected(0.0)
    assert lc.errored(1.0, 1) == [Log("debug", "chat: socket 1 error event")]
    assert lc.state == CONNECTED


def test_events_before_start_are_ignored():
    """Inputs before start() produce no socket or render."""
    lc = new()
    assert lc.opened(0.0, 1) == []
    assert lc.closed(0.0, 1, 1006, "", False) == []
    assert non_log(lc.timer_fired(0.0, "retry")) == []
    assert lc.page_visible(0.0) == [] and lc.retry_pressed(0.0) == []
    assert lc.state == IDLE


# ------------------------------------------------------------------- stop

def test_stop_closes_and_cancels_everything():
    """stop() closes the socket with 1000, cancels every running timer, later events ignored."""
    lc = connected(0.0)
    lc.page_visible(1.0)
    acts = lc.stop(2.0)
    assert non_log(acts) == [CloseSocket(1, 1000, "stop"), CancelTimer("heartbeat"),
                             CancelTimer("verify")]
    assert lc.state == IDLE and lc._timers == {}
    assert lc.closed(2.1, 1, 1000, "stop", True) == []
    assert non_log(lc.timer_fired(5.0, "heartbeat")) == []


def test_stop_while_waiting_and_restart():
    """stop() while waiting cancels the retry; start() afterwards begins afresh."""
    lc = connected(0.0)
    lc.closed(1.0, 1, 1006, "", False)
    assert non_log(lc.stop(1.5)) == [CancelTimer("retry")]
    acts = lc.start(3.0)
    assert acts == [OpenSocket(2), StartTimer("connect", S.connect_timeout), Render(CONNECTING)]
    assert lc.attempt == 0


# ----------------------------------------------------------------- config

def test_invalid_settings_fail_with_config_alert():
    """Unusable Settings make start() go FAILED with alert "config" and open nothing."""
    lc = Lifecycle(Settings(ping_interval=0), random=HALF)
    acts = lc.start(0.0)
    assert non_log(acts) == [Render(FAILED, 0, None, "config")]
    assert "ping_interval" in of(acts, Log)[0].text
    assert non_log(lc.retry_pressed(1.0)) == [] and lc.state == FAILED


def test_shell_config_error_fails_with_config_alert():
    """start(now, config_error=...) reports a shell-detected configuration problem."""
    lc = new()
    acts = lc.start(0.0, config_error="data-server is not a ws:// or wss:// URL")
    assert renders(acts) == [Render(FAILED, 0, None, "config")]
    assert "data-server" in of(acts, Log)[0].text


@pytest.mark.parametrize("kw", [dict(backoff_cap=0.5), dict(dead_after=2.0),
                                dict(alert_after=0), dict(alert_after=2.5),
                                dict(connect_timeout="5"), dict(stable_after=-1)])
def test_settings_problems(kw):
    """Settings.problems() flags inconsistent or invalid values."""
    assert Settings(**kw).problems() != []


# ---------------------------------------------------------------- actions

def test_actions_compare_by_fields_and_repr():
    """Actions are equal by type and fields and have a readable repr."""
    assert OpenSocket(1) == OpenSocket(1) and OpenSocket(1) != OpenSocket(2)
    assert OpenSocket(1) != CancelTimer(1)
    assert ProbeServer() == ProbeServer()
    assert Render("offline") == Render("offline", 0, None, None)
    assert repr(CloseSocket(3, 1000, "x")) == "CloseSocket(socket_id=3, code=1000, reason='x')"
    assert repr(ProbeServer()) == "ProbeServer(url=None)"


def test_default_random_is_used_when_not_injected():
    """Without an injected random the machine still works (stdlib random)."""
    lc = Lifecycle()
    lc.start(0.0)
    acts = lc.closed(0.1, 1, 1006, "", False)
    assert FLOOR <= timer(acts, "retry") <= S.backoff_base


# ------------------------------------------------- random-sequence testing

SOCKET_PICK = st.sampled_from(["current", "previous", "bogus"])
CODES = st.sampled_from([1000, 1001, 1005, 1006, 1008, 1009, 1011, 1012, 1013, 4000, 4001,
                         4050, 4100, 4201, 4202, 4250, 3000])


class LifecycleMachine(RuleBasedStateMachine):
    """Random inputs in random order; the Harness checks invariants after each one."""

    @initialize(seed=st.integers(0, 2 ** 16))
    def setup(self, seed):
        self.sh = Harness(Lifecycle(Settings(), random=stdlib_random.Random(seed).random))
        self.sh.call("start")

    def pick(self, which):
        if which == "current" and self.sh.lc.socket_id is not None:
            return self.sh.lc.socket_id
        if which == "previous" and self.sh.all_ids:
            return self.sh.all_ids[0]
        return 999

    @rule(dt=st.floats(0, 90))
    def wait(self, dt):
        self.sh.now += dt

    @rule(late=st.floats(0, 70))
    def fire_next_timer(self, late):
        if self.sh.timers:
            name, when = min(self.sh.timers.items(), key=lambda kv: kv[1])
            self.sh.now = max(self.sh.now, when) + late
            self.sh.call("timer_fired", name)

    @rule(name=st.sampled_from(L.TIMERS))
    def fire_stale_timer(self, name):
        if name not in self.sh.timers:
            self.sh.call("timer_fired", name)

    @rule(which=SOCKET_PICK)
    def opened(self, which):
        sid = self.pick(which)
        if sid in self.sh.sockets:  # the browser reports open only for live sockets
            self.sh.call("opened", sid)
        else:
            acts = self.sh.lc.opened(self.sh.now, sid)
            assert non_log(acts) == []

    @rule(which=SOCKET_PICK, beats=st.sampled_from([None, BEATS, (1.0, 65.0)]))
    def joined(self, which, beats):
        sid = self.pick(which)
        if sid in self.sh.sockets:  # a welcome only comes on a live socket
            self.sh.call("joined", sid, beats)
        else:
            assert non_log(self.sh.lc.joined(self.sh.now, sid, beats)) == []

    @rule(which=SOCKET_PICK, code=CODES, clean=st.booleans())
    def closed(self, which, code, clean):
        self.sh.call("closed", self.pick(which), code, "", clean)

    @rule(which=SOCKET_PICK)
    def errored(self, which):
        self.sh.call("errored", self.pick(which))

    @rule(which=SOCKET_PICK, pong=st.booleans())
    def received(self, which, pong):
        self.sh.call("received", self.pick(which), {"type": "pong"} if pong else {"type": "msg"})

    @rule(ev=st.sampled_from(["went_offline", "went_online", "page_hidden", "page_visible",
                              "retry_pressed", "start"]))
    def browser(self, ev):
        self.sh.call(ev)

    @rule(result=st.sampled_from(close.PROBE_RESULTS))
    def probe(self, result):
        self.sh.call("probe_result", result)

    @rule()
    def restart(self):
        self.sh.call("restart", "conversation full")

    @rule()
    def stop_and_start(self):
        self.sh.call("stop")
        assert self.sh.lc.state == IDLE
        self.sh.call("start")

    @rule()
    def heals_when_network_and_server_are_fine(self):
        """From any live state, a healthy server and network lead to CONNECTED."""
        lc = self.sh.lc
        if lc.state in (FAILED, OFFLINE):
            return
        self.sh.call("page_visible")
        self.sh.run(self.sh.now + 2 * S.backoff_cap + S.connect_timeout + 1, up)
        assert lc.state == CONNECTED

    @invariant()
    def consistent(self):
        if hasattr(self, "sh"):
            self.sh.check()


LifecycleMachine.TestCase.settings = hsettings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_random_input_sequences_keep_invariants = LifecycleMachine.TestCase


# ------------------------------------------------ the real MicroPython 1.28


# ---- interference on the path: open is not connected ---------------------------------------------

def test_open_without_welcome_is_a_failed_attempt_and_clear_interference():
    """A proxy that completes the upgrade but withholds the server's frames: no "Connected", the welcome
    timer fails the attempt with 4100, and one such attempt is enough to name the interference."""
    lc = new()
    lc.start(0.0)
    lc.opened(0.1, 1)
    acts = lc.timer_fired(0.1 + S.welcome_timeout, "connect")
    assert CloseSocket(1, close.CONNECT_TIMEOUT, "no welcome") in acts
    assert CONNECTED not in [r.state for r in renders(acts)]
    assert lc.state == RECONNECTING and lc.attempt == 1
    assert lc.interference == L.SILENT and lc.last_failure == close.INTERFERENCE
    assert not of(acts, ProbeServer)  # it opened: the server is reachable, nothing to probe


def test_connections_cut_soon_after_welcome_count_and_go_on_probation():
    """A proxy that cuts each connection 0.2 s after the upgrade: the attempt counter grows, the second
    cut names the interference, and later connections are not shown connected until they last."""
    lc = new()
    sh = Harness(lc)
    sh.call("start")
    shown = []
    for n in range(1, 4):
        sh.call("opened", n)
        shown += [r.state for r in renders(sh.call("joined", n))]
        sh.now += 0.2
        sh.call("closed", n, 1006, "", False)
        assert lc.attempt == n
        sh.now = lc.retry_at
        sh.call("timer_fired", "retry")
    assert shown == [CONNECTED, RECONNECTING, RECONNECTING]  # only the first, unforeseeable, flashed
    assert lc.interference == L.CUT
    # a connection that lives through probation is shown connected, and once stable resets the count
    sh.call("opened", 4)
    sh.call("joined", 4)
    assert lc.state == RECONNECTING and lc.live
    sh.now += S.probation
    acts = sh.call("timer_fired", "probation")
    assert renders(acts) == [Render(CONNECTED)] and lc.state == CONNECTED
    sh.now += S.stable_after
    sh.call("closed", 4, 1006, "", False)
    assert lc.attempt == 1 and lc.interference is None


def test_server_closes_soon_after_welcome_are_not_interference():
    """Clean closes from the server itself (restart 1012, busy 1013) are not the path's doing."""
    lc = connected(0.0)
    lc.closed(0.2, 1, close.RESTART, "restart", True)
    assert lc.interference is None and lc.last_failure == close.DRAINING


def test_unreachable_probe_clears_interference_evidence():
    """A connection cut, then a server that is down (probe unreachable): the alert says unreachable."""
    lc = connected(0.0)
    lc.closed(0.2, 1, 1006, "", False)
    for n in range(2, 2 + S.alert_after):
        lc.timer_fired(lc.retry_at, "retry")
        acts = lc.closed(lc.retry_at or 100.0, n, 1006, "", False)
        if of(acts, ProbeServer):
            lc.probe_result(lc.retry_at - 0.1, close.PROBE_UNREACHABLE)
    assert lc.attempt >= S.alert_after and lc.alert == close.UNREACHABLE and lc.interference is None


def test_headers_too_large_probe_is_terminal():
    lc = new()
    lc.start(0.0)
    lc.closed(0.1, 1, 1006, "", False)
    acts = lc.probe_result(0.2, close.PROBE_HEADERS)
    assert lc.state == FAILED and renders(acts)[-1].alert == close.HEADERS_TOO_LARGE


def test_handover_moves_the_live_conversation_to_the_new_socket():
    lc = connected(0.0)
    acts = lc.handover(30.0, "trial-1")
    assert acts[0] == CloseSocket(1, close.NORMAL, "moved to another transport")
    assert lc.socket_id == "trial-1" and lc.state == CONNECTED and lc.live
    assert StartTimer(HEARTBEAT_TIMER, S.ping_interval) in acts
    assert lc.closed(31.0, 1, 1000, "", True) == []  # the old socket's close is stale
    assert lc.handover(31.0, "trial-1") == []


def test_clear_interference_paces_retries_like_try_later():
    """Once the path clearly breaks live connections, retries wait at least the backoff ceiling."""
    lc = new(random=lambda: 0.0)
    lc.start(0.0)
    lc.opened(0.1, 1)
    lc.joined(0.1, 1)
    lc.closed(0.3, 1, 1006, "", False)
    assert lc.retry_at - 0.3 < ceiling(1, S.backoff_base, S.backoff_cap)  # one cut could be a crash
    lc.timer_fired(lc.retry_at, "retry")
    lc.opened(lc.retry_at or 1.0, 2)
    now = 2.0
    lc.joined(now, 2)
    lc.closed(now + 0.2, 2, 1006, "", False)
    assert lc.interference == L.CUT
    assert lc.retry_at - (now + 0.2) >= ceiling(2, S.backoff_base, S.backoff_cap)


def test_retry_now_skips_the_wait_only_while_waiting():
    lc = connected(0.0)
    assert lc.retry_now(1.0, "switching") == []
    lc.closed(10.0, 1, 1006, "", False)
    acts = lc.retry_now(10.1, "switching to HTTP")
    assert OpenSocket(2) in acts and lc.socket_id == 2


# ---- restart: a new connection at once, not a failure -----------------------------------------------

def test_restart_closes_normally_and_opens_a_new_socket_at_once():
    """The client starts over (its conversation is full): 1000 on the old socket, the new one opens at once,
    shown as connecting; no backoff, no probe, the attempt counter untouched; the welcome connects."""
    sh = Harness(new())
    sh.call("start")
    sh.call("opened", 1)
    sh.call("joined", 1)
    sh.now = 50.0
    acts = sh.call("restart", "conversation full")
    assert non_log(acts) == [CloseSocket(1, close.NORMAL, "conversation full"), CancelTimer(HEARTBEAT_TIMER),
                             OpenSocket(2), StartTimer(CONNECT_TIMER, S.connect_timeout), Render(CONNECTING)]
    assert sh.lc.state == CONNECTING and sh.lc.attempt == 0 and sh.lc.retry_at is None
    assert not of(acts, ProbeServer) and [a.level for a in of(acts, Log)] == ["info"]
    sh.call("opened", 2)
    assert renders(sh.call("joined", 2)) == [Render(CONNECTED)]
    assert sh.lc.attempt == 0 and sh.lc.last_failure is None


def test_restart_keeps_the_attempt_count_and_skips_a_pending_retry():
    """Restarting is neither a failure nor a success: the count stays; waiting for a retry, it attempts now."""
    sh = Harness(new())
    sh.call("start")
    sh.call("closed", 1, 1006, "", False)
    assert sh.lc.attempt == 1 and RETRY_TIMER in sh.timers
    acts = sh.call("restart", "conversation full")
    assert CancelTimer(RETRY_TIMER) in acts and OpenSocket(2) in acts and RETRY_TIMER not in sh.timers
    assert sh.lc.attempt == 1 and sh.lc.state == CONNECTING


@pytest.mark.parametrize("setup", ["idle", "offline", "failed"])
def test_restart_is_ignored_where_no_connection_is_wanted(setup):
    lc = new()
    if setup != "idle":
        lc.start(0.0)
    if setup == "offline":
        lc.went_offline(0.1)
    if setup == "failed":
        lc.closed(0.1, 1, 1008, "", True)
    state = lc.state
    assert non_log(lc.restart(1.0, "conversation full")) == []
    assert lc.state == state and lc.socket_id is None and lc._timers == {}
