"""The chat client: every decision of the widget, as a pure object (events in, actions out).

The browser shell calls one method per browser event (socket opened, frame received, timer fired,
form submitted, ...) with ``now`` (wall-clock seconds), and carries out the returned actions
(``widget/core/actions.py``). The client owns the ``Lifecycle`` (the connection state machine), the
``Conversation`` (messages and the outbox) and the ``Diagnostics`` record, and joins them:

- the connection is *joined* once the server's ``welcome`` arrived on the current socket; only
  then does the outbox flush, paced by the token bucket to the limits the ``welcome`` announced;
- when the joined connection is lost, sent-but-unacknowledged messages go back to ``queued`` and
  replies cut off mid-stream are removed (the replay brings them whole);
- a failed handshake is explained by probing ``/ws-check`` (bounded by the ``probe`` timer);
- the lifecycle's ``Render`` becomes what the visitor sees, including a countdown that ticks;
- console lines: debug ones only in debug mode, and a repeated line is written once with a count;
- which transport each attempt uses: WebSocket, or the HTTP fallback (``/poll``, long-polling) once
  the lifecycle names interference on the path; while on the fallback a *trial* WebSocket is tried
  every ``upgrade_interval`` seconds (and when the browser comes back online), and when its welcome
  arrives the conversation moves onto it (``Lifecycle.handover``): in-flight messages are resent
  (the server deduplicates by id) and the replay fills in whatever the old transport had not shown;
- after an outage, one ``report`` frame tells the server what failed (never message texts);
- a message the server refuses waits in the outbox again: after ``rate_limited`` nothing is sent before
  its ``retry_after`` has passed (on any connection: the limit may be the visitor's address's); after
  ``conversation_full`` (the conversation reached its size budget and would refuse it again) the widget
  starts a new conversation on a new connection (``Lifecycle.restart``) and the message goes there;
- nothing connects (and nothing is stored) until the visitor opens the panel, unless a conversation
  is already in progress in this tab (it reconnects at once, so replies keep arriving); consultant
  replies that arrive while the panel is closed are counted for the launcher's unread badge.

All timers, the lifecycle's and the client's own (``flush``, ``countdown``, ``probe``, ``upgrade``,
``trial``), go through ``StartTimer``/``CancelTimer``: the shell keeps one map of named timers.
"""

import json

from protocol import close, frames
from protocol.ratelimit import TokenBucket
from widget.core import lifecycle, settings as page_settings
from widget.core.actions import (
    Announce, CancelTimer, ClearInput, CloseSocket, HideReconnect, Log, OfferRetry, OpenSocket, ProbeServer, Render, RemoveMessages,
    SaveSession, Send, ShowMessages, ShowNotice, ShowReconnect, ShowStatus, ShowTyping, ShowUnread, StartTimer,
)
from widget.core.chat import Conversation, OutboxFull, Update
from widget.core.diagnostics import Diagnostics

FLUSH_TIMER = "flush"
COUNTDOWN_TIMER = "countdown"
PROBE_TIMER = "probe"
UPGRADE_TIMER = "upgrade"   # while on the HTTP fallback: time to try WebSocket again
TRIAL_TIMER = "trial"       # a trial WebSocket that has not been welcomed by then failed
TIMERS = (FLUSH_TIMER, COUNTDOWN_TIMER, PROBE_TIMER, UPGRADE_TIMER, TRIAL_TIMER)

# Frames that only prove the connection alive: the lifecycle takes them, the conversation never sees them.
LIVENESS_FRAMES = ("pong", "beat")

WEBSOCKET = "websocket"
POLL = "poll"
FALLBACK_MODES = ("auto", "off", "always")
UPGRADE_INTERVAL = 120.0  # seconds between trials of WebSocket while on the fallback
TRIAL_TIMEOUT = 8.0

COUNTDOWN_TICK = 0.25   # seconds between countdown updates
PROBE_TIMEOUT = 4.0     # a /ws-check that has not answered by then counts as unreachable
FLUSH_SLACK = 0.01      # wake just after the token is due, not just before


class Page:
    """What the client needs to know about the page it runs in (read once by the shell)."""

    def __init__(self, protocol="http:", host="localhost", origin="http://localhost", debug=False,
                 runtime="micropython"):
        self.protocol = protocol
        self.host = host
        self.origin = origin
        self.debug = debug
        self.runtime = runtime


class Client:
    def __init__(self, settings, page, new_id, conditions=None, random=None, timing=None):
        """``settings``: the page's settings dict; ``page``: a ``Page``; ``new_id()``: a fresh message id;
        ``conditions()``: the browser's network conditions, for the diagnostics record."""
        self.settings = settings
        self.page = page
        self.contact = settings.get("contact") or {}
        self.url = page_settings.socket_url(settings, page.protocol, page.host)
        self.poll_url = page_settings.poll_url(settings, page.protocol, page.host)
        self.fallback = settings.get("fallback") if settings.get("fallback") in FALLBACK_MODES else "auto"
        self.upgrade_interval = page_settings.positive(settings.get("upgrade_interval"), UPGRADE_INTERVAL)
        self.lifecycle = lifecycle.Lifecycle(timing, random=random)
        self.conversation = Conversation(new_id, lang=(settings.get("words") or {}).get("lang"))
        self.diagnostics = Diagnostics(settings.get("version", "?"), page.runtime, self.url)
        self.pacer = TokenBucket()
        self._hold_until = 0.0       # no message is sent before then (the server's last retry_after)
        self._full = False           # the conversation is full: start a new one once every earlier question is answered
        self._conditions = conditions or (lambda: {})
        self._joined = None          # the socket whose welcome arrived
        self._timers = {}            # the client's own running timers
        self._attempt_started = {}   # socket id -> when it was opened
        self._transports = {}        # socket id -> WEBSOCKET or POLL
        self.fallback_reason = None  # why the HTTP fallback is in use (an interference kind), or None
        self._trial = None           # the trial WebSocket's id while one is under way
        self._trials = 0
        self._interference_told = None
        self._shown = None           # (state, alert) last shown, for the diagnostics record
        self._countdown = None       # (attempt, retry_at, since) while reconnecting
        self._probing = False
        self.opened = False          # the panel is open
        self._begun = False          # the lifecycle was started (the visitor opened the panel, or a conversation is in progress)
        self.unread = 0
        self.unread_fresh = 0        # of those, how many arrived in this page view (announced once each)
        self._last_log = None
        self._repeats = 0

    # ---- start -----------------------------------------------------------------------------------
    def start(self, now, online=True, saved=None, opened=False):
        """Restore what a reload kept (``saved``: the stored text, or None). Connect when the panel is
        ``opened`` or a conversation is in progress; otherwise wait for ``panel_opened`` (state idle)."""
        acts = [ShowMessages(self.conversation.restore(_parse(saved)))]
        self.opened = opened
        if not online:
            acts += self._run(self.lifecycle.went_offline(now), now)  # remembered: start waits for the network
        if opened or self.conversation.in_progress:
            return acts + self._begin(now)
        return acts + [ShowStatus(lifecycle.IDLE, None, self.contact, None)]

    def _begin(self, now):
        self._begun = True
        problem = page_settings.check(self.settings, self.page.protocol)
        self.diagnostics.problem = problem
        return self._run(self.lifecycle.start(now, problem), now)

    # ---- the panel -------------------------------------------------------------------------------
    def panel_opened(self, now):
        """The visitor opened the panel: connect if not yet, and everything so far counts as read."""
        self.opened = True
        acts = []
        if self.unread:
            self.unread = 0
            acts.append(ShowUnread(0, self.unread_fresh))
        if self.conversation.mark_read():
            acts += self._save()
        if not self._begun:
            acts += self._begin(now)
        return acts

    def panel_closed(self, now):
        self.opened = False
        return []

    def _read_or_count(self, frame):
        """A consultant reply is complete: announced when the panel is open, else counted as unread."""
        seq = frame.get("seq")
        if not isinstance(seq, int) or seq <= self.conversation.read_seq:
            return []  # replayed, and seen before
        if self.opened:
            self.conversation.mark_read()
            if seq <= self.conversation.known_seq:  # replayed after a reload: shown, not read out again
                return self._save()
            return [Announce(str(frame.get("text", "")))] + self._save()
        self.unread += 1
        if seq > self.conversation.known_seq:  # not one this tab counted before a reload: say it
            self.unread_fresh += 1
        return [ShowUnread(self.unread, self.unread_fresh)] + self._save()  # its seq: not fresh after a reload

    # ---- the socket ------------------------------------------------------------------------------
    @property
    def transport(self):
        """The transport of the current connection (or of the next attempt)."""
        return self._transports.get(self.lifecycle.socket_id) or self._next_transport()

    def socket_opened(self, now, socket_id):
        if socket_id == self._trial:
            return [Send(socket_id, self.conversation.hello_frame())]
        acts = self._run(self.lifecycle.opened(now, socket_id), now)
        if socket_id == self.lifecycle.socket_id:
            acts.append(Send(socket_id, self.conversation.hello_frame()))
        return acts

    def socket_errored(self, now, socket_id):
        return self._run(self.lifecycle.errored(now, socket_id), now)

    def socket_closed(self, now, socket_id, code, reason, clean):
        started = self._attempt_started.pop(socket_id, now)
        self._transports.pop(socket_id, None)
        if socket_id == self._trial:
            self.diagnostics.record(now, "upgrade", result="failed", code=code)
            return self._end_trial()
        current = socket_id == self.lifecycle.socket_id
        was_joined = current and self._joined == socket_id
        acts = self._run(self.lifecycle.closed(now, socket_id, code, reason, clean), now)
        if current and (not was_joined or self.lifecycle.last_failure == close.INTERFERENCE):
            self._failed(code, now - started)
        self.diagnostics.record(now, "close", socket=socket_id, code=code, reason=reason[:120], clean=clean,
                                duration=round(now - started, 3), decision=self.lifecycle.state)
        return acts

    def socket_received(self, now, socket_id, data):
        """A text frame arrived on ``socket_id``."""
        if socket_id != self.lifecycle.socket_id and socket_id != self._trial:
            return []
        try:
            frame = json.loads(data)
        except ValueError:
            return self._log("warn", "chat: ignored a frame that is not JSON")
        return self.frame_received(now, socket_id, frame)

    def frame_received(self, now, socket_id, frame):
        """A decoded frame arrived on ``socket_id`` (the HTTP fallback delivers them decoded)."""
        if socket_id == self._trial:
            return self._trial_frame(now, socket_id, frame)
        if socket_id != self.lifecycle.socket_id or not isinstance(frame, dict):
            return []
        acts = self._run(self.lifecycle.received(now, socket_id, frame), now)
        kind = frame.get("type")
        if kind in LIVENESS_FRAMES:
            return acts
        if kind == "welcome":
            acts += self._run(self.lifecycle.joined(now, socket_id, frames.read_heartbeat(frame)), now)
            return acts + self._welcomed(now, socket_id, frame)
        if kind == "error" and frame.get("code") == "rate_limited":
            acts.append(ShowMessages(self.conversation.requeue(str(frame.get("id")))))
            self._hold_until = max(self._hold_until, now + frames.read_retry_after(frame))
            return acts + self._flush(now)
        if kind == "error" and frame.get("code") == "conversation_full":
            return acts + self._conversation_full(now, str(frame.get("id")))
        if kind == "error":
            return acts + self._log("warn", "chat: server reported %s: %s" % (frame.get("code"), frame.get("message")))
        updates = self.conversation.received(frame)
        acts.append(ShowMessages(updates))
        acts.append(ShowTyping(self.conversation.typing))
        if kind == "ack" or kind == "message":
            acts += self._save()
        if kind == "reply" and updates:
            acts += self._read_or_count(frame)
        if self._full and not self.conversation.awaiting_answer():
            acts += self._start_over(now)
        return acts

    def _welcomed(self, now, socket_id, frame):
        if isinstance(frame.get("contact"), dict):
            self.contact = frame["contact"]
        limits = frames.read_limits(frame)
        if limits is not None:
            self.pacer.configure(limits[0], limits[1], limits[2])
        acts = []
        if self.conversation.welcomed(str(frame.get("session")), frame.get("resumed") is True):
            acts.append(ShowNotice("session_expired"))
        self._joined = socket_id
        acts += self._save()
        acts += self._report()
        if self._transports.get(socket_id) == POLL and self.fallback == "auto":
            acts += self._start(UPGRADE_TIMER, self.upgrade_interval)
        return acts + self._flush(now)

    def _conversation_full(self, now, message_id):
        """The conversation reached the server's size budget: the message was not stored, and would be
        refused again here. It waits in the outbox, and a new conversation starts on a new connection
        (its hello carries no session); the outbox flushes after its welcome. The old socket is no longer
        current, so the errors for the rest of the same burst are ignored: those messages were requeued
        with the connection, and the restart happens once. The answers still to come in the old
        conversation are taken first (the new one would never replay them); meanwhile nothing is sent."""
        if self.conversation.last_seq == 0:
            # Nothing is stored in this conversation: the message alone is over the budget and a new one
            # would refuse it too. It stays "sent", so it is not resent in a loop, until the next connection.
            return self._log("warn", "chat: the server refuses a message even in an empty conversation")
        acts = [ShowMessages(self.conversation.requeue(message_id))]
        if self._full:
            return acts
        self._full = True
        acts.append(ShowNotice("conversation_full"))
        if self.conversation.awaiting_answer():  # an earlier question's answer is to come: take it first
            return acts
        return acts + self._start_over(now)

    def _start_over(self, now):
        self._full = False
        acts = []
        self.conversation.forget_session()
        self.diagnostics.record(now, "restart", reason="conversation_full")
        acts += self._end_trial(False)  # a trial WebSocket would rejoin the full conversation
        acts += self._run(self.lifecycle.restart(now, "conversation full"), now)
        return acts + self._save()  # a reload starts the new conversation too, not the full one

    # ---- the visitor -----------------------------------------------------------------------------
    def submitted(self, now, text):
        """The visitor sent what they typed (Send button or Enter)."""
        text = text.strip()
        if not text:
            return []
        try:
            update = self.conversation.compose(text)
        except OutboxFull:
            return [ShowNotice("outbox_full")]
        return [ClearInput(), ShowMessages([update])] + self._save() + self._flush(now)

    def retry_pressed(self, now):
        return self._run(self.lifecycle.retry_pressed(now), now)

    # ---- the browser -----------------------------------------------------------------------------
    def went_online(self, now):
        acts = self._run(self.lifecycle.went_online(now), now)
        if self._upgradable():  # a new network may well pass WebSockets
            acts += self._cancel(UPGRADE_TIMER) + self._try_upgrade(now)
        return acts

    def went_offline(self, now):
        return self._run(self.lifecycle.went_offline(now), now)

    def page_hidden(self, now):
        return self._run(self.lifecycle.page_hidden(now), now)

    def page_visible(self, now):
        return self._run(self.lifecycle.page_visible(now), now)

    def page_frozen(self, now):
        """The page goes into the back/forward cache: close the connection (an open one would keep
        the page out of the cache, or be dead when it comes back) and stop every timer."""
        acts = self._end_trial(False) + self._run(self.lifecycle.stop(now), now)
        for name in TIMERS:
            acts += self._cancel(name)
        return acts

    def page_restored(self, now):
        """The page came back from the back/forward cache: connect again, as on a fresh start."""
        if not self._begun:
            return []
        return self._run(self.lifecycle.start(now), now)

    def timer_fired(self, now, name):
        if name in lifecycle.TIMERS:
            return self._run(self.lifecycle.timer_fired(now, name), now)
        if name not in TIMERS:
            raise ValueError("unknown timer %r" % (name,))
        if self._timers.pop(name, None) is None:
            return []
        if name == FLUSH_TIMER:
            return self._flush(now)
        if name == COUNTDOWN_TIMER:
            return self._tick(now)
        if name == UPGRADE_TIMER:
            return self._try_upgrade(now)
        if name == TRIAL_TIMER:
            if self._trial is None:
                return []
            self.diagnostics.record(now, "upgrade", result="timeout")
            return [CloseSocket(self._trial, close.CONNECT_TIMEOUT, "upgrade timeout")] + self._end_trial()
        return self._probed(now, None)

    # ---- /ws-check -------------------------------------------------------------------------------
    def probe_answered(self, now, ok, text):
        """The /ws-check request finished: ``ok`` is the HTTP status being 2xx, ``text`` the body."""
        if not ok:
            return self._probed(now, None)
        try:
            answer = json.loads(text)
        except ValueError:
            answer = {}
        return self._probed(now, answer)

    def probe_failed(self, now):
        return self._probed(now, None)

    def _probed(self, now, answer):
        if not self._probing:
            return []  # answered after its timer gave up on it
        self._probing = False
        acts = self._cancel(PROBE_TIMER)
        result = close.probe_result(answer)
        self.diagnostics.record(now, "probe", result=result)
        if result == close.PROBE_HEADERS and self.fallback == "auto" and self.fallback_reason is None:
            # The socket carries this host's cookies and they are too large; the fallback sends none.
            return acts + self._fall_back(now, close.HEADERS_TOO_LARGE) + \
                self._run(self.lifecycle.retry_now(now, "switching to HTTP", True), now)
        return acts + self._run(self.lifecycle.probe_result(now, result), now)

    # ---- the HTTP fallback and moving back to WebSocket -------------------------------------------
    def _next_transport(self):
        if self.fallback == "always":
            return POLL
        if self.fallback == "off":
            return WEBSOCKET
        return POLL if self.fallback_reason is not None else WEBSOCKET

    def _choose_transport(self, now):
        """The transport for a new attempt: the fallback once interference is clear (mode "auto")."""
        acts = []
        kind = self.lifecycle.interference
        if self.fallback == "auto" and self.fallback_reason is None and kind is not None:
            acts += self._fall_back(now, kind)
        elif self.fallback == "off" and kind is not None and kind != self._interference_told:
            acts += self._log("info", "chat: live connections are interrupted on the way (%s); "
                                      "the HTTP fallback is off" % kind)
        self._interference_told = kind
        return self._next_transport(), acts

    def _fall_back(self, now, reason):
        self.fallback_reason = reason
        self.diagnostics.record(now, "fallback", reason=reason)
        if reason == close.HEADERS_TOO_LARGE:
            return self._log("info", "chat: this browser's cookies are too large for the socket; using HTTP")
        return self._log("info", "chat: live connections are interrupted on the way (%s); using HTTP" % reason)

    def _falling_back(self):
        return self.fallback == "auto" and self.fallback_reason is None and self.lifecycle.interference is not None \
            and self.lifecycle.state == lifecycle.RECONNECTING and self.lifecycle.socket_id is None

    def _upgradable(self):
        return self._trial is None and self.lifecycle.state == lifecycle.CONNECTED and \
            self._transports.get(self.lifecycle.socket_id) == POLL and self.fallback == "auto"

    def _try_upgrade(self, now):
        if not self._upgradable():
            return []
        self._trials += 1
        self._trial = "trial-%d" % self._trials
        self._transports[self._trial] = WEBSOCKET
        self.diagnostics.record(now, "upgrade", result="trying", socket=self._trial)
        return [OpenSocket(self._trial, self.url, WEBSOCKET)] + self._start(TRIAL_TIMER, TRIAL_TIMEOUT)

    def _trial_frame(self, now, socket_id, frame):
        if not isinstance(frame, dict) or frame.get("type") != "welcome":
            return []
        if self.lifecycle.state != lifecycle.CONNECTED:
            return [CloseSocket(socket_id, close.NORMAL, "not needed")] + self._end_trial()
        self._trial = None
        acts = self._cancel(TRIAL_TIMER)
        acts += self._run(self.lifecycle.handover(now, socket_id, frames.read_heartbeat(frame)), now)
        self.fallback_reason = None
        self.diagnostics.record(now, "upgrade", result="moved", socket=socket_id)
        acts += self._log("info", "chat: WebSocket works again; moved back from HTTP")
        return acts + self._welcomed(now, socket_id, frame)

    def _end_trial(self, again=True):
        """The trial is over without moving: try again after the interval (if still on the fallback)."""
        acts = self._cancel(TRIAL_TIMER)
        if self._trial is not None:
            if not again:
                acts.append(CloseSocket(self._trial, close.NORMAL, "stop"))
            self._transports.pop(self._trial, None)
            self._trial = None
        if again and self._transports.get(self.lifecycle.socket_id) == POLL and self.fallback == "auto":
            acts += self._start(UPGRADE_TIMER, self.upgrade_interval)
        return acts

    # ---- failure reports -------------------------------------------------------------------------
    def _failed(self, code, lasted):
        self.diagnostics.failed(self.lifecycle.last_failure, code, lasted)

    def _report(self):
        """Once through after failed attempts: tell the server what failed."""
        self._describe_transport()
        frame = self.diagnostics.take_report(self._transports.get(self._joined, WEBSOCKET), self.conditions())
        return [] if frame is None else [Send(self._joined, frame)]

    # ---- diagnostics -----------------------------------------------------------------------------
    def diagnostics_json(self, now):
        self._describe_transport()
        return self.diagnostics.report_json(now, self.lifecycle.state, self.lifecycle.alert, self.conditions())

    def diagnostics_text(self, now):
        self._describe_transport()
        return self.diagnostics.report_text(now, self.lifecycle.state, self.lifecycle.alert, self.conditions())

    def _describe_transport(self):
        self.diagnostics.transport = self.transport
        self.diagnostics.fallback_reason = self.fallback_reason

    def conditions(self):
        """The browser's conditions (from the shell) and the page's and socket's schemes."""
        found = dict(self._conditions())
        found["page_protocol"] = self.page.protocol
        found["socket_protocol"] = self.url.split(":", 1)[0] + ":"
        return found

    # ---- internals -------------------------------------------------------------------------------
    def _run(self, actions, now):
        """The lifecycle's actions, completed with what only the client knows."""
        out = []
        for action in actions:
            kind = type(action)
            if kind is OpenSocket:
                transport, logs = self._choose_transport(now)
                out += logs
                self._attempt_started[action.socket_id] = now
                self._transports[action.socket_id] = transport
                self.diagnostics.record(now, "attempt", socket=action.socket_id, attempt=self.lifecycle.attempt + 1,
                                        transport=transport, **self.conditions())
                out.append(OpenSocket(action.socket_id, self.poll_url if transport == POLL else self.url, transport))
            elif kind is CloseSocket:
                # a handshake that timed out, or a connection that went silent soon after it opened
                if action.code == close.CONNECT_TIMEOUT or (action.code == close.HEARTBEAT_TIMEOUT and
                                                            self.lifecycle.last_failure == close.INTERFERENCE):
                    self._failed(action.code, now - self._attempt_started.get(action.socket_id, now))
                self._attempt_started.pop(action.socket_id, None)
                self._transports.pop(action.socket_id, None)
                out.append(action)
                out += self._lost()
            elif kind is Render:
                out += self._show(now, action)
            elif kind is ProbeServer:
                out += self._probe()
            elif kind is Log:
                out += self._log(action.level, action.text)
            else:
                out.append(action)
        if self._falling_back():  # the next attempt changes transport: no reason to wait for it
            out += self._run(self.lifecycle.retry_now(now, "switching to HTTP", True), now)
        return out

    def _is_joined(self):
        return self._joined is not None and self._joined == self.lifecycle.socket_id and self.lifecycle.live

    def _lost(self):
        """The joined connection is gone: what was in flight waits again, partial replies go."""
        if self._joined is None or self._is_joined():
            return []
        self._joined = None
        self._full = False  # the next connection resumes the old conversation; a refusal there says it again
        acts = self._cancel(UPGRADE_TIMER)
        if self._trial is not None and self.lifecycle.socket_id is None:
            acts += self._end_trial(False)
        return acts + [ShowMessages(self.conversation.connection_lost()),
                RemoveMessages(self.conversation.abandon_streams()),
                ShowTyping(False)] + self._cancel(FLUSH_TIMER)

    def _show(self, now, render):
        acts = self._lost()
        if (render.state, render.alert) != self._shown:
            self._shown = (render.state, render.alert)
            self.diagnostics.record(now, "state", state=render.state, alert=render.alert)
        detail = self.diagnostics.problem if render.alert == close.CONFIG else None
        acts.append(ShowStatus(render.state, render.alert, self.contact, detail))
        if render.state == lifecycle.RECONNECTING:
            self._countdown = (render.attempt, render.retry_at, now)
            return acts + self._tick(now)
        self._countdown = None
        # Stopped for a reason retrying may cure (not a configuration error): the visitor can try again.
        retry = render.state == lifecycle.FAILED and render.alert != close.CONFIG
        return acts + [OfferRetry() if retry else HideReconnect()] + self._cancel(COUNTDOWN_TIMER)

    def _tick(self, now):
        if self._countdown is None:
            return []
        attempt, retry_at, since = self._countdown
        if retry_at is None:  # an attempt is under way: Retry would do nothing
            return [ShowReconnect(attempt, None, 1.0, False)]
        left = retry_at - now
        if left < 0:
            left = 0.0
        span = retry_at - since
        if span < 0.001:
            span = 0.001
        fraction = 1.0 - left / span
        if fraction > 1.0:
            fraction = 1.0
        return [ShowReconnect(attempt, int(left + 0.999), fraction, True)] + self._start(COUNTDOWN_TIMER, COUNTDOWN_TICK)

    def _probe(self):
        self._probing = True
        url = page_settings.check_url(self.settings, self.page.origin)
        return [ProbeServer(url)] + self._start(PROBE_TIMER, PROBE_TIMEOUT)

    def _flush(self, now):
        """Send queued messages, paced to the server's limit (after welcome: the server knows our session)."""
        acts = self._cancel(FLUSH_TIMER)
        if not self._is_joined():
            return acts
        socket_id = self.lifecycle.socket_id
        if self._full:  # the full conversation would refuse them: they wait for the new one
            return acts
        while now >= self._hold_until and self.conversation.queued_count() and self.pacer.take(now):
            for frame in self.conversation.frames_to_send(1):
                acts.append(Send(socket_id, frame))
                acts.append(ShowMessages([Update(self.conversation.find(frame["id"]))]))
        if self.conversation.queued_count():
            acts += self._flush_later(max(self.pacer.wait(now), self._hold_until - now))
        return acts

    def _flush_later(self, delay):
        if FLUSH_TIMER in self._timers:
            return []
        return self._start(FLUSH_TIMER, delay + FLUSH_SLACK)

    def _start(self, name, delay):
        self._timers[name] = True
        return [StartTimer(name, delay)]

    def _cancel(self, name):
        if self._timers.pop(name, None) is None:
            return []
        return [CancelTimer(name)]

    def _save(self):
        """Keep the conversation for a reload; one where nothing was said is not kept (and a kept one
        that expired is forgotten), so a later page view does not reconnect for nothing."""
        return [SaveSession(self.conversation.snapshot() if self.conversation.in_progress else None)]

    def _log(self, level, text):
        if level == "debug" and not self.page.debug:
            return []
        if text == self._last_log:
            self._repeats += 1
            return []
        acts = []
        if self._repeats:
            acts.append(Log("info", "%s (repeated %d times)" % (self._last_log, self._repeats + 1)))
        self._last_log = text
        self._repeats = 0
        acts.append(Log(level, text))
        return acts


def _parse(saved):
    if saved is None:
        return None
    try:
        return json.loads(saved)
    except ValueError:
        return None
