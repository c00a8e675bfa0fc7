"""The browser shell of the chat widget (PyScript, MicroPython or Pyodide).

It holds no decisions: each browser event becomes one call on the pure ``Client``
(``widget/core/client.py``, tested under CPython), and each action the client returns becomes a
browser call, through one handler per action class (an action without a handler is an error).
Timers are one map of named ``setTimeout`` handles.

Asyncio is not used here: MicroPython's asyncio calls ``js.setTimeout`` detached from ``window``,
which fails once this shell has used ``js.window.setTimeout`` (docs/platform-notes.md). Browser
APIs are called through ``js.window`` for the same reason.
"""

import json
import random
import sys
import time

import js
from pyscript.ffi import create_proxy, to_js

from widget.core import actions as A
from widget.core.client import POLL, Client, Page
from widget.core.words import Words
from widget.shell.view import View


def is_missing(value):
    # JS null is None in MicroPython but a falsy jsnull in Pyodide; undefined is the reverse.
    return value is None or str(value) in ("undefined", "null", "None")


def text_of(value):
    return "" if is_missing(value) else str(value)


class Shell:
    def __init__(self, client, view):
        self.client = client
        self.view = view
        self.sockets = {}
        self.timers = {}
        self.timer_callbacks = {}  # one proxy per timer name, not one per setTimeout (Pyodide would leak them)
        self.handlers = {
            A.OpenSocket: self.open_socket, A.CloseSocket: self.close_socket, A.Send: self.send,
            A.StartTimer: self.start_timer, A.CancelTimer: self.cancel_timer, A.ProbeServer: self.probe,
            A.Log: self.log, A.ShowStatus: lambda action: view.show_status(action.state, action.alert, action.contact,
                                                                           action.detail),
            A.ShowReconnect: lambda action: view.show_reconnect(action.attempt, action.seconds_left, action.fraction,
                                                                action.can_retry),
            A.HideReconnect: lambda action: view.hide_reconnect(), A.OfferRetry: lambda action: view.offer_retry(),
            A.ShowMessages: lambda action: view.apply(action.updates),
            A.RemoveMessages: lambda action: view.remove(action.messages),
            A.ShowTyping: lambda action: view.show_typing(action.typing),
            A.ShowNotice: lambda action: view.show_notice(action.key),
            A.ShowUnread: lambda action: view.show_unread(action.count, action.fresh),
            A.Announce: lambda action: view.announce(action.text),
            A.ClearInput: lambda action: view.take_input(), A.SaveSession: self.save,
        }

    def run(self, actions):
        for action in actions:
            self.handlers[type(action)](action)  # KeyError: an action this shell cannot carry out

    def on(self, target, event, call):
        """Route a browser event to ``call(now, event)`` on the client and run what it returns."""
        target.addEventListener(event, create_proxy(lambda e: self.run(call(time.time(), e))))

    # ---- wiring --------------------------------------------------------------------------------
    def start(self):
        window, document, client, view = js.window, js.document, self.client, self.view
        self.on(window, "online", lambda now, e: client.went_online(now))
        self.on(window, "offline", lambda now, e: client.went_offline(now))
        # Back/forward cache: leave with the connection closed, come back connecting.
        self.on(window, "pagehide", lambda now, e: client.page_frozen(now) if e.persisted else [])
        self.on(window, "pageshow", lambda now, e: client.page_restored(now) if e.persisted
                else client.page_visible(now))
        self.on(document, "visibilitychange", lambda now, e: client.page_hidden(now)
                if document.visibilityState == "hidden" else client.page_visible(now))
        self.on(view.form, "submit", self.submit)
        self.on(view.input, "keydown", self.keydown)
        self.on(view.retry_button, "click", lambda now, e: client.retry_pressed(now))
        # boot.js owns opening and closing (the host page's launcher asks it): see widget/boot.js.
        self.on(view.root, "chat-widget:open", lambda now, e: client.panel_opened(now))
        self.on(view.root, "chat-widget:close", lambda now, e: client.panel_closed(now))
        view.copy_button.addEventListener("click", create_proxy(self.copy_diagnostics))
        window.chatWidgetDiagnostics = create_proxy(lambda *a: client.diagnostics_json(time.time()))
        opened = str(view.root.getAttribute("data-open")) == "true"
        try:
            self.run(client.start(time.time(), bool(js.navigator.onLine), self.load(), opened))
        finally:
            js.window.chatWidgetBoot.pythonStarted()  # boot.js closes an early socket the start did not take

    def submit(self, now, event):
        event.preventDefault()
        return self.client.submitted(now, str(self.view.input.value))

    def keydown(self, now, event):
        if event.key != "Enter" or event.shiftKey:
            return []  # Shift+Enter: a new line
        event.preventDefault()
        return self.client.submitted(now, str(self.view.input.value))

    # ---- sockets -------------------------------------------------------------------------------
    def open_socket(self, action):
        socket_id, client = action.socket_id, self.client
        if action.transport == POLL:
            self.sockets[socket_id] = HttpSocket(self, socket_id, action.url)
            return
        # widget/boot.js may have opened this socket while the runtime loaded: take it if so.
        socket = js.window.chatWidgetBoot.takeSocket(action.url)
        if is_missing(socket):
            socket = js.WebSocket.new(action.url)
        self.sockets[socket_id] = socket
        socket.onopen = create_proxy(lambda e: self.run(client.socket_opened(time.time(), socket_id)))
        socket.onmessage = create_proxy(
            lambda e: self.run(client.socket_received(time.time(), socket_id, str(e.data))))
        socket.onerror = create_proxy(lambda e: self.run(client.socket_errored(time.time(), socket_id)))
        socket.onclose = create_proxy(lambda e: self.closed(socket_id, e))

    def closed(self, socket_id, event):
        self.socket_ended(socket_id, int(event.code), text_of(event.reason), bool(event.wasClean))

    def socket_ended(self, socket_id, code, reason, clean):
        self.sockets.pop(socket_id, None)
        self.run(self.client.socket_closed(time.time(), socket_id, code, reason, clean))

    def close_socket(self, action):
        socket = self.sockets.pop(action.socket_id, None)
        if socket is not None:
            socket.close(action.code, action.reason)

    def send(self, action):
        socket = self.sockets.get(action.socket_id)  # a WebSocket or an HttpSocket
        if socket is not None:
            socket.send(json.dumps(action.frame))

    # ---- timers --------------------------------------------------------------------------------
    def start_timer(self, action):
        name = action.name
        self.cancel_timer(action)
        if name not in self.timer_callbacks:
            self.timer_callbacks[name] = create_proxy(lambda *a: self.fire(name))
        self.timers[name] = js.window.setTimeout(self.timer_callbacks[name], int(action.delay * 1000))

    def cancel_timer(self, action):
        handle = self.timers.pop(action.name, None)
        if handle is not None:
            js.window.clearTimeout(handle)

    def fire(self, name):
        self.timers.pop(name, None)
        self.run(self.client.timer_fired(time.time(), name))

    # ---- /ws-check -----------------------------------------------------------------------------
    def probe(self, action):
        client = self.client
        answered = lambda response: response.text().then(  # noqa: E731
            create_proxy(lambda text: self.run(client.probe_answered(time.time(), bool(response.ok), str(text)))),
            create_proxy(lambda error: self.run(client.probe_failed(time.time()))))
        # With the cookies a WebSocket handshake to that host carries: /ws-check judges the same headers.
        js.window.fetch(action.url, to_js({"cache": "no-store", "credentials": "include"})).then(
            create_proxy(answered), create_proxy(lambda error: self.run(client.probe_failed(time.time()))))

    # ---- the view, storage, console ------------------------------------------------------------
    def save(self, action):
        # widget/boot.js keeps it: in this frame's sessionStorage, or with the host page when the frame
        # is denied storage. "" forgets it.
        js.window.chatWidgetStorage.save("" if action.snapshot is None else json.dumps(action.snapshot))

    def load(self):
        saved = js.window.chatWidgetStorage.load()
        return None if is_missing(saved) else str(saved)

    def log(self, action):
        (js.console.warn if action.level == "warn" else js.console.info)(action.text)

    def copy_diagnostics(self, event):
        text = self.client.diagnostics_text(time.time())
        shown = lambda copied: create_proxy(lambda *a: self.view.show_copy_result(copied, text))  # noqa: E731
        try:
            js.navigator.clipboard.writeText(text).then(shown(True), shown(False))
        except Exception:  # no clipboard (insecure context, old browser)
            self.view.show_copy_result(False, text)


class HttpSocket:
    """The HTTP fallback in the socket's place: runs a ``PollChannel``'s requests with ``fetch`` and
    reports what it says as the socket's events. No credentials: the channel token is the session."""

    def __init__(self, shell, socket_id, url):
        from widget.core import polling  # only when the fallback is used: not compiled on the way to connected
        self.shell = shell
        self.socket_id = socket_id
        self.channel = polling.PollChannel(url)
        self.proxies = {}
        self.carry_out(self.channel.open())

    def send(self, text):
        self.carry_out(self.channel.send(text))

    def close(self, code, reason):
        self.carry_out(self.channel.close())

    def carry_out(self, items):
        from widget.core import polling
        shell, client, socket_id = self.shell, self.shell.client, self.socket_id
        for item in items:
            kind = type(item)
            if kind is polling.Request:
                self.fetch(item)
            elif kind is polling.Opened:
                shell.run(client.socket_opened(time.time(), socket_id))
            elif kind is polling.Frame:
                shell.run(client.frame_received(time.time(), socket_id, item.frame))
            else:
                shell.socket_ended(socket_id, item.code, item.reason, item.clean)

    def fetch(self, request):
        options = {"method": request.method, "cache": "no-store", "credentials": "omit"}
        if request.body is not None:
            options["body"] = request.body
            options["headers"] = {"Content-Type": "text/plain;charset=UTF-8"}  # a simple request: no preflight
        got_response, got_text, failed = self.callbacks(request.kind)
        js.window.fetch(request.url, to_js(options)).then(got_response, failed)

    def callbacks(self, kind):
        """One set of proxies per request kind, made once (at most one request of a kind is in flight;
        a proxy per fetch would pile up under Pyodide over hours of polling)."""
        if kind not in self.proxies:
            status = {}

            def got_response(response):
                status["code"] = int(response.status)
                response.text().then(got_text, failed)

            got_text = create_proxy(lambda text: self.carry_out(self.channel.answered(kind, status["code"], str(text))))
            failed = create_proxy(lambda error: self.carry_out(self.channel.answered(kind, 0, "")))
            self.proxies[kind] = (create_proxy(got_response), got_text, failed)
        return self.proxies[kind]


def conditions():
    """The browser's network conditions now, for the diagnostics record."""
    navigator = js.navigator
    found = {"online": bool(navigator.onLine), "visibility": str(js.document.visibilityState)}
    connection = navigator.connection
    if not is_missing(connection):
        for key in ("effectiveType", "rtt", "downlink"):
            value = getattr(connection, key, None)
            if not is_missing(value):
                found[key] = str(value)
    return found


def main():
    element = js.document.getElementById("chat-widget-settings")
    settings = json.loads(str(element.textContent)) if not is_missing(element) else {}
    location = js.window.location
    page = Page(str(location.protocol), str(location.host), str(location.origin), bool(js.window.chatWidgetStorage.debug()),
                "micropython" if sys.implementation.name == "micropython" else "pyodide")
    new_id = lambda: "m%x%06x" % (int(time.time() * 1000), random.getrandbits(24))  # noqa: E731
    view = View(js.document, js.document.getElementById("chat-widget"), Words(settings.get("words")))
    Shell(Client(settings, page, new_id, conditions), view).start()


if __name__ == "__main__":
    main()
