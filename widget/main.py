"""The browser shell of the chat widget (PyScript, MicroPython or Pyodide).

Thin on purpose: it turns browser events (socket, timers, network, visibility, form) into calls on the
pure ``Lifecycle`` and ``Conversation`` objects, and turns the actions they return into browser calls.
All decisions live in those modules, which are tested under CPython.
"""

import json
import random
import sys
import time

import js
from pyscript.ffi import create_proxy, to_js

from widget import lifecycle, words
from widget.chat import Conversation, OutboxFull, Pacer, Update
from widget.diagnostics import Diagnostics, check_settings
from widget.view import View


PROBE_TIMEOUT_MS = 4000
RUNTIME = "micropython" if sys.implementation.name == "micropython" else "pyodide"
STORAGE_KEY = "chat-widget:v1"


def is_missing(value):
    # JS null is None in MicroPython but a falsy jsnull in Pyodide; undefined is the reverse.
    return value is None or str(value) in ("undefined", "null", "None")


class Shell:
    def __init__(self, settings):
        self.settings = settings
        self.contact = settings.get("contact") or {}
        self.debug = self._debug_enabled()
        document = js.document
        self.view = View(document, document.getElementById("chat-widget"))
        self.lifecycle = lifecycle.Lifecycle(lifecycle.Settings())
        self.conversation = Conversation(self._new_id)
        self.sockets = {}
        self.timers = {}
        self.timer_callbacks = {}
        self.retry_at = None
        self.retry_from = None
        self.ticker = None
        self.last_log = None
        self.repeats = 0
        self.url = self._socket_url()
        self.diagnostics = Diagnostics(settings.get("version", "?"), RUNTIME, self.url)
        self.opened_at = {}
        self.joined = False  # welcomed on the current socket
        self.last_render = None  # (state, alert) last shown, for the diagnostics record
        self.pacer = Pacer()
        self.flush_timer = None
        self.flush_proxy = create_proxy(self.flush)

    # ---- wiring -------------------------------------------------------------------------------
    def start(self):
        window = js.window
        window.addEventListener("online", create_proxy(lambda event: self.feed(self.lifecycle.went_online(time.time()))))
        window.addEventListener("offline", create_proxy(lambda event: self.feed(self.lifecycle.went_offline(time.time()))))
        window.addEventListener("pageshow", create_proxy(lambda event: self.feed(self.lifecycle.page_visible(time.time()))))
        js.document.addEventListener("visibilitychange", create_proxy(self.on_visibility))
        self.view.form.addEventListener("submit", create_proxy(self.on_submit))
        self.view.input.addEventListener("keydown", create_proxy(self.on_keydown))
        self.restore()
        self.view.root.querySelector('[data-action="retry"]').addEventListener(
            "click", create_proxy(lambda event: self.feed(self.lifecycle.retry_pressed(time.time()))))
        self.copy_handler = create_proxy(self.copy_diagnostics)
        self.view.copy_button.addEventListener("click", self.copy_handler)
        js.window.chatWidgetDiagnostics = create_proxy(self.diagnostics_json)
        problem = check_settings(self.settings, str(js.window.location.protocol))
        self.diagnostics.problem = problem
        if not js.navigator.onLine:
            self.feed(self.lifecycle.went_offline(time.time()))  # remembered: start() waits for the network
        self.feed(self.lifecycle.start(time.time(), problem))

    def on_visibility(self, event):
        now = time.time()
        if js.document.visibilityState == "hidden":
            self.feed(self.lifecycle.page_hidden(now))
        else:
            self.feed(self.lifecycle.page_visible(now))

    def on_keydown(self, event):
        if event.key == "Enter" and not event.shiftKey:
            event.preventDefault()
            self.send_typed()

    def on_submit(self, event):
        event.preventDefault()
        self.send_typed()

    def send_typed(self):
        text = self.view.input.value.strip()
        if not text:
            return
        try:
            update = self.conversation.compose(text)
        except OutboxFull:
            self.view.show_notice(words.OUTBOX_FULL)
            return
        self.view.take_input()
        self.view.apply([update])
        self.save()
        if self.joined:
            self.flush()

    def flush(self, *args):
        """Send queued messages, paced to the server's limit (after welcome: the server knows our session)."""
        self.flush_timer = None
        socket = self.sockets.get(self.lifecycle.socket_id)
        if socket is None or not self.joined:
            return
        now = time.time()
        while self.conversation.queued_count() and self.pacer.take(now):
            for frame in self.conversation.frames_to_send(1):
                socket.send(json.dumps(frame))
                self.view.apply([Update(self.conversation.find(frame["id"]))])
        if self.conversation.queued_count():
            self.flush_later(self.pacer.wait(now))

    def flush_later(self, delay):
        if self.flush_timer is None:
            self.flush_timer = js.window.setTimeout(self.flush_proxy, int(delay * 1000) + 10)

    def lost_connection(self):
        self.joined = False
        self.view.apply(self.conversation.connection_lost())
        self.view.remove(self.conversation.abandon_streams())
        self.view.show_typing(False)

    # ---- storage: the outbox and session survive a reload (sessionStorage: this tab only) --------
    def save(self):
        try:
            js.window.sessionStorage.setItem(STORAGE_KEY, json.dumps(self.conversation.snapshot()))
        except Exception:
            pass  # storage disabled or full: the conversation still works, it just won't survive a reload

    def restore(self):
        try:
            saved = js.window.sessionStorage.getItem(STORAGE_KEY)
            snapshot = None if is_missing(saved) else json.loads(str(saved))
        except Exception:
            snapshot = None
        self.view.apply(self.conversation.restore(snapshot))

    # ---- socket events ------------------------------------------------------------------------
    def open_socket(self, socket_id):
        now = time.time()
        self.opened_at[socket_id] = now
        self.diagnostics.record(now, "attempt", socket=socket_id, attempt=self.lifecycle.attempt + 1,
                                **self.conditions())
        socket = js.WebSocket.new(self.url)
        self.sockets[socket_id] = socket
        socket.onopen = create_proxy(lambda event: self.on_open(socket_id))
        socket.onmessage = create_proxy(lambda event: self.on_message(socket_id, event))
        socket.onerror = create_proxy(lambda event: self.feed(self.lifecycle.errored(time.time(), socket_id)))
        socket.onclose = create_proxy(lambda event: self.on_close(socket_id, event))

    def on_close(self, socket_id, event):
        self.sockets.pop(socket_id, None)
        reason = "" if is_missing(event.reason) else str(event.reason)
        now = time.time()
        started = self.opened_at.pop(socket_id, now)
        self.feed(self.lifecycle.closed(now, socket_id, int(event.code), reason, bool(event.wasClean)))
        self.diagnostics.record(now, "close", socket=socket_id, code=int(event.code), reason=reason[:120],
                                clean=bool(event.wasClean), duration=round(now - started, 3),
                                decision=self.lifecycle.state)

    def on_open(self, socket_id):
        self.feed(self.lifecycle.opened(time.time(), socket_id))
        socket = self.sockets.get(socket_id)
        if socket is not None and socket_id == self.lifecycle.socket_id:
            socket.send(json.dumps(self.conversation.hello_frame()))

    def on_message(self, socket_id, event):
        if socket_id != self.lifecycle.socket_id:
            return
        try:
            frame = json.loads(str(event.data))
        except ValueError:
            self.log("warn", "chat: ignored a frame that is not JSON")
            return
        if not isinstance(frame, dict):
            return
        self.feed(self.lifecycle.received(time.time(), socket_id, frame))
        kind = frame.get("type")
        if kind == "welcome":
            if isinstance(frame.get("contact"), dict):
                self.contact = frame["contact"]
            limits = frame.get("limits")
            if isinstance(limits, dict) and all(isinstance(limits.get(k), int) and limits.get(k) > 0
                                                for k in ("messages", "per", "burst")):
                self.pacer.configure(limits["messages"], limits["per"], limits["burst"])
            if self.conversation.welcomed(str(frame.get("session")), frame.get("resumed") is True):
                self.view.show_notice(words.SESSION_EXPIRED)
            self.joined = True
            self.save()
            self.flush()
        elif kind == "error" and frame.get("code") == "rate_limited":
            self.view.apply(self.conversation.requeue(str(frame.get("id"))))
            retry_after = frame.get("retry_after")
            self.flush_later(retry_after if isinstance(retry_after, (int, float)) and 0 <= retry_after < 600 else 5)
        elif kind == "error":
            self.log("warn", "chat: server reported %s: %s" % (frame.get("code"), frame.get("message")))
        else:
            self.view.apply(self.conversation.received(frame))
            self.view.show_typing(self.conversation.typing)
            if kind == "ack" or kind == "message":
                self.save()

    # ---- actions ------------------------------------------------------------------------------
    def feed(self, actions):
        for action in actions:
            name = type(action).__name__
            if name == "OpenSocket":
                self.open_socket(action.socket_id)
            elif name == "CloseSocket":
                socket = self.sockets.pop(action.socket_id, None)
                if socket is not None:
                    socket.close(action.code, action.reason)
                self.lost_connection()
            elif name == "Send":
                socket = self.sockets.get(action.socket_id)
                if socket is not None:
                    socket.send(json.dumps(action.frame))
            elif name == "StartTimer":
                self.start_timer(action.name, action.delay)
            elif name == "CancelTimer":
                self.cancel_timer(action.name)
            elif name == "Render":
                self.render(action)
            elif name == "ProbeServer":
                self.probe()
            elif name == "Log":
                self.log(action.level, action.text)

    def render(self, action):
        if action.state != lifecycle.CONNECTED:
            self.lost_connection()
        if (action.state, action.alert) != self.last_render:
            self.last_render = (action.state, action.alert)
            self.diagnostics.record(time.time(), "state", state=action.state, alert=action.alert)
        self.view.show_state(action.state)
        detail = self.diagnostics.problem if action.alert == "config" else None
        self.view.show_alert(action.alert, self.contact, detail)
        if action.state == lifecycle.RECONNECTING:
            self.retry_at = action.retry_at
            self.retry_from = time.time()
            self.reconnect_attempt = action.attempt
            self.tick()
            if self.ticker is None:
                self.ticker = js.window.setInterval(create_proxy(self.tick), 250)
        else:
            self.view.hide_reconnect()
            if self.ticker is not None:
                js.window.clearInterval(self.ticker)
                self.ticker = None

    def tick(self, *args):
        if self.retry_at is None:
            self.view.show_reconnect(self.reconnect_attempt, None, 1)
            return
        now = time.time()
        left = max(0.0, self.retry_at - now)
        span = max(0.001, self.retry_at - self.retry_from)
        self.view.show_reconnect(self.reconnect_attempt, int(left + 0.999), min(1.0, 1 - left / span))

    def start_timer(self, name, delay):
        self.cancel_timer(name)
        callback = self.timer_callbacks.get(name)
        if callback is None:
            callback = create_proxy(lambda *args: self.on_timer(name))
            self.timer_callbacks[name] = callback
        self.timers[name] = js.window.setTimeout(callback, int(delay * 1000))

    def cancel_timer(self, name):
        handle = self.timers.pop(name, None)
        if handle is not None:
            js.window.clearTimeout(handle)

    def on_timer(self, name):
        self.timers.pop(name, None)
        self.feed(self.lifecycle.timer_fired(time.time(), name))

    def probe(self):
        # Browsers report a refused handshake (403) as 1006, like a dead server: ask over HTTP why.
        # Promise callbacks, not asyncio: MicroPython's asyncio calls js.setTimeout detached from
        # window, which fails with "Illegal invocation" once the shell has used js.window.setTimeout.
        options = to_js({"cache": "no-store", "signal": js.window.AbortSignal.timeout(PROBE_TIMEOUT_MS)})
        url = self.settings.get("check_url", "/ws-check") + "?origin=" + str(js.window.encodeURIComponent(js.window.location.origin))
        request = js.window.fetch(url, options)
        request.then(create_proxy(self._probe_answered), create_proxy(self._probe_failed))

    def _probe_answered(self, response):
        if not response.ok:
            self._probe_failed(None)
            return
        response.text().then(create_proxy(self._probe_read), create_proxy(self._probe_failed))

    def _probe_read(self, text):
        try:
            answer = json.loads(str(text))
        except ValueError:
            answer = {}
        if not answer.get("allowed", True):
            result = "origin_rejected"
        elif answer.get("draining") or not answer.get("accepting", True):
            result = "draining"
        else:
            result = "ok"
        self.probed(result)

    def _probe_failed(self, error):
        self.probed("unreachable")

    def probed(self, result):
        now = time.time()
        self.diagnostics.record(now, "probe", result=result)
        self.feed(self.lifecycle.probe_result(now, result))

    # ---- diagnostics ----------------------------------------------------------------------------
    def conditions(self):
        navigator = js.navigator
        found = {"online": bool(navigator.onLine), "visibility": str(js.document.visibilityState),
                 "page_protocol": str(js.window.location.protocol), "socket_protocol": self.url.split(":", 1)[0] + ":"}
        connection = navigator.connection
        if not is_missing(connection):
            for key in ("effectiveType", "rtt", "downlink"):
                value = getattr(connection, key, None)
                if not is_missing(value):
                    found[key] = str(value)
        return found

    def diagnostics_json(self, *args):
        return self.diagnostics.report_json(time.time(), self.lifecycle.state, self.lifecycle.alert, self.conditions())

    def copy_diagnostics(self, event):
        text = self.diagnostics.report_text(time.time(), self.lifecycle.state, self.lifecycle.alert, self.conditions())
        try:
            clipboard = js.navigator.clipboard
            if is_missing(clipboard):
                raise RuntimeError("no clipboard")
            clipboard.writeText(text).then(create_proxy(lambda *a: self.view.show_copy_result(True, text)),
                                           create_proxy(lambda *a: self.view.show_copy_result(False, text)))
        except Exception:
            self.view.show_copy_result(False, text)

    # ---- helpers ------------------------------------------------------------------------------
    def log(self, level, text):
        if level == "debug" and not self.debug:
            return
        if text == self.last_log:
            self.repeats += 1
            return
        if self.repeats:
            js.console.info("%s (repeated %d times)" % (self.last_log, self.repeats + 1))
        self.last_log = text
        self.repeats = 0
        if level == "warn":
            js.console.warn(text)
        else:
            js.console.info(text)

    def _socket_url(self):
        url = self.settings.get("socket_url") or "/ws"
        if url.startswith("/"):
            location = js.window.location
            scheme = "wss:" if str(location.protocol) == "https:" else "ws:"
            url = scheme + "//" + str(location.host) + url
        return url + ("&" if "?" in url else "?") + "v=1"

    def _debug_enabled(self):
        if "chat-debug" in str(js.window.location.search):
            return True
        try:
            return str(js.window.localStorage.getItem("chat-widget-debug")) == "1"
        except Exception:
            return False

    def _new_id(self):
        return "m%x%06x" % (int(time.time() * 1000), random.getrandbits(24))


def load_settings():
    element = js.document.getElementById("chat-widget-settings")
    return json.loads(str(element.textContent)) if not is_missing(element) else {}


shell = Shell(load_settings())
shell.start()
