"""``/metrics``: what an operator scrapes and alerts on, in the Prometheus text format.

One ``Metrics`` per app, fed by small calls from the places where things happen (the socket handler,
the store, the loop-lag watcher) and read by Prometheus. ``NO_METRICS`` stands in where there is no
app (unit tests that build a ``ChatConnection`` directly), so the code that counts never checks.

One process: each app has a registry of its own (the tests make many apps in one process, and the
global registry would refuse the second app's names). Several worker processes (``chat-widget serve
--workers N``, server/workers.py): the parent sets ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder
before the server is imported and before it forks; prometheus_client then keeps each process's values
in memory-mapped files there, and ``/metrics``, whichever worker answers it, adds every worker's files
up (``MultiProcessCollector``): counters and histograms are summed, a dead worker's counts included (a
total never goes backwards); open connections are summed over the live workers and loop lag is the
worst live worker's (when a worker ends, the parent drops its gauges: ``mark_process_dead``).

Not public: only addresses in ``metrics_allow`` (server/config.py) may read it; anyone else gets 403
naming the setting. Never a message text, an origin or an address in a label: every label has a short
fixed set of values, so the number of series stays small whatever visitors send.
"""

import functools
import inspect
import ipaddress
import os
import time

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics,
                               generate_latest, values)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.multiprocess import MultiProcessCollector
from quart import Blueprint, Response, current_app, request
from quart_cors import cors_exempt

from protocol import close

from .config import setting_hint
from .transport.reports import OTHER, UNCLASSIFIED

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
TRANSPORTS = ("websocket", "poll")
# Why a handshake or a channel opening was turned away (socket.refused and serve): origin 403,
# headers 431, draining 503, full 1013, address 429, version 4001, unavailable 4203 (the store does not
# answer: before the upgrade, or at the hello); at the hello that would start a conversation: busy 4201
# (the store's budget is spent), limited 4202 (this address started too many).
REFUSAL_REASONS = ("origin", "headers", "draining", "full", "address", "version", "busy", "limited", "unavailable")
JOIN_OUTCOMES = ("new", "resumed", "expired")  # expired: asked to resume a session that is gone
FAILURE_CLASSES = (*close.FAILURES, UNCLASSIFIED, OTHER)  # reports.counted_class's keys

# Bucket bounds in seconds, each set spanning what is normal to what a visitor would call broken.
# Store calls: a SQLite commit in WAL mode or a Redis round trip takes about a millisecond; a
# struggling disk or network, hundreds.
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Message in to its ack out (the durable write included): the widget shows "sent" until the ack, so
# what matters is staying under about 100 ms, where a visitor starts to notice, and how far over.
ROUND_TRIP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Question stored to reply stored: the offline consultant takes milliseconds, an LLM one to tens of
# seconds; the service gives up at 60 s (Conversations.reply_timeout), so the top bound is timeouts.
REPLY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)

# No ``_created`` series (each counter's and histogram's start time): they double the output, and the
# multiprocess mode has none, so both modes now say the same. prometheus_client's one switch, for the
# whole process: this server is its only user.
disable_created_metrics()


def multiprocess_dir():
    """The folder shared by the worker processes, or None when this process is the only one."""
    return os.environ.get(MULTIPROCESS_ENV) or None


class _Families:
    """The metric families themselves. In multiprocess mode one set per process (two objects writing
    the same file entry would overwrite each other's increments), else one per app."""

    def __init__(self, registry):
        r = registry
        self.open = Gauge("chat_widget_open_connections", "Open chat connections: sockets and HTTP fallback "
                          "channels.", ["transport"], registry=r, multiprocess_mode="livesum")
        self.accepted = Counter("chat_widget_handshakes_accepted_total", "Handshakes and fallback channel "
                                "openings admitted.", ["transport"], registry=r)
        self.refused = Counter("chat_widget_handshakes_refused_total", "Handshakes, channel openings and new "
                               "conversations turned away, by reason.", ["reason"], registry=r)
        self.joined = Counter("chat_widget_session_joins_total", "Hellos answered: a new conversation, a resumed "
                              "one (a reconnect), or a new one because the one asked for had expired.",
                              ["outcome"], registry=r)
        self.reports = Counter("chat_widget_failure_reports_total", "Widgets' reports of failed attempts before "
                               "they got through, by failure class (a report naming two classes counts "
                               "under both).", ["failure_class"], registry=r)
        self.messages = Counter("chat_widget_visitor_messages_total", "Visitor message frames received (before "
                                "rate limits; a resend after a lost ack counts again).", registry=r)
        self.round_trip = Histogram("chat_widget_message_round_trip_seconds", "Visitor message frame received to "
                                    "its ack sent, the durable store write included.", registry=r,
                                    buckets=ROUND_TRIP_BUCKETS)
        self.reply = Histogram("chat_widget_reply_latency_seconds", "Visitor question stored to the consultant's "
                               "reply stored, in this process.", registry=r, buckets=REPLY_BUCKETS)
        self.store = Histogram("chat_widget_store_call_duration_seconds", "Conversation store calls, by method.",
                               ["operation"], registry=r, buckets=STORE_BUCKETS)
        self.loop_lag = Gauge("chat_widget_event_loop_lag_seconds", "How late the event loop woke from a "
                              "0.5 s sleep: overload (the worst live worker's).", registry=r,
                              multiprocess_mode="livemax")
        # Every known label value from the start: a series at 0 can be rated and alerted on; an
        # absent one cannot.
        for transport in TRANSPORTS:
            self.open.labels(transport)
            self.accepted.labels(transport)
        for family, known in ((self.refused, REFUSAL_REASONS), (self.joined, JOIN_OUTCOMES),
                              (self.reports, FAILURE_CLASSES)):
            for value in known:
                family.labels(value)


_process_families = None  # multiprocess mode: this process's one set


def _shared_families():
    global _process_families
    if not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError(f"{MULTIPROCESS_ENV} was set after prometheus_client was imported: the workers' "
                           "parent must set it before importing the server")
    if _process_families is None:
        _process_families = _Families(None)
    return _process_families


class Metrics:
    """One app's metrics: call these where things happen; ``exposition()`` is what ``/metrics`` answers."""

    def __init__(self):
        self.multiprocess = multiprocess_dir() is not None
        if self.multiprocess:
            self._families = _shared_families()
            self._exposed = CollectorRegistry()
            MultiProcessCollector(self._exposed)
        else:
            self._exposed = CollectorRegistry()
            self._families = _Families(self._exposed)
        self._replies = _ReplyClock(self.reply_finished)

    def connection_opened(self, transport):
        """A handshake or channel opening was admitted (``socket.serve`` starts): counted, and open
        until ``connection_closed``."""
        self._families.accepted.labels(transport).inc()
        self._families.open.labels(transport).inc()

    def connection_closed(self, transport):
        self._families.open.labels(transport).dec()

    def handshake_refused(self, reason):
        if reason not in REFUSAL_REASONS:
            raise ValueError(f"unknown refusal reason {reason!r}; one of {', '.join(REFUSAL_REASONS)}")
        self._families.refused.labels(reason).inc()

    def session_joined(self, resumed, expired=False):
        outcome = "resumed" if resumed else ("expired" if expired else "new")
        self._families.joined.labels(outcome).inc()

    def failure_report(self, failure_class):
        """One widget's report named ``failure_class`` (``reports.counted_class``: a bounded set)."""
        self._families.reports.labels(failure_class).inc()

    def message_received(self):
        self._families.messages.inc()

    def round_trip(self, seconds):
        self._families.round_trip.observe(seconds)

    def reply_finished(self, seconds):
        self._families.reply.observe(seconds)

    def store_call(self, operation, seconds):
        self._families.store.labels(operation).observe(seconds)

    def loop_lag(self, seconds):
        self._families.loop_lag.set(seconds)

    def instrument_store(self, store):
        """Time every coroutine method of this ``store`` instance, whatever its class (the class, and so
        ``type(store).__name__``, stays). Returns the store.

        The store also sees both ends of a reply's wait (question stored, reply stored), so it clocks
        ``reply_finished`` without touching the conversation service. A call that makes another (a
        store's ``last_seq`` reading ``entries_after``) counts under both names.
        """
        for name in dir(type(store)):
            if name.startswith("_") or name in vars(store):
                continue
            if inspect.iscoroutinefunction(inspect.getattr_static(store, name)):
                setattr(store, name, self._timed(name, getattr(store, name)))
        return store

    def _timed(self, operation, call):
        after = self._replies.hooks.get(operation)
        signature = inspect.signature(call)

        @functools.wraps(call)
        async def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                result = await call(*args, **kwargs)
            finally:
                self.store_call(operation, time.perf_counter() - started)
            if after is not None:
                after(signature.bind(*args, **kwargs).arguments, result)
            return result

        return timed

    def exposition(self):
        """The text format (0.0.4) of every metric: this app's, or every worker's in multiprocess mode."""
        return generate_latest(self._exposed)


class _ReplyClock:
    """Question stored to reply stored, as the store sees them (``Store.add_visitor_message`` and
    ``add_reply`` both return ``(entry, is_new)``). A question stored by another process, or before a
    restart, is not timed: its start is unknown here."""

    limit = 10_000  # questions waiting at once; beyond, the oldest are forgotten (their replies untimed)

    def __init__(self, finished):
        self._finished = finished
        self._asked = {}  # (session id, message id) -> when it was stored (time.monotonic)
        self.hooks = {"add_visitor_message": self.question_stored, "add_reply": self.reply_stored}

    def question_stored(self, arguments, result):
        if result[1]:  # a resend of a stored question changes nothing
            self._asked[(arguments["session_id"], arguments["message_id"])] = time.monotonic()
            if len(self._asked) > self.limit:
                del self._asked[next(iter(self._asked))]

    def reply_stored(self, arguments, result):
        asked = self._asked.pop((arguments["session_id"], arguments["in_reply_to"]), None)
        if asked is not None:
            self._finished(time.monotonic() - asked)


class NoMetrics:
    """Counts nothing: where there is no app to count for (a ``ChatConnection`` made by a unit test)."""

    def connection_opened(self, transport): pass
    def connection_closed(self, transport): pass
    def handshake_refused(self, reason): pass
    def session_joined(self, resumed, expired=False): pass
    def failure_report(self, failure_class): pass
    def message_received(self): pass
    def round_trip(self, seconds): pass
    def reply_finished(self, seconds): pass
    def store_call(self, operation, seconds): pass
    def loop_lag(self, seconds): pass


NO_METRICS = NoMetrics()


# ---- the route ---------------------------------------------------------------------------------
bp = Blueprint("metrics", __name__)


def may_read(address, allowed):
    """True when ``address`` (``request.remote_addr``) is in one of the ``allowed`` networks."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:  # no address (a Unix socket, a test client)
        return False
    ip = getattr(ip, "ipv4_mapped", None) or ip  # ::ffff:10.0.0.5 is 10.0.0.5
    return any(ip in ipaddress.ip_network(network, strict=False) for network in allowed)


@bp.route("/metrics")
@cors_exempt  # scraped by Prometheus, never fetched by a page
async def metrics():
    config = current_app.extensions["chat_config"]
    if not may_read(request.remote_addr, config.metrics_allow):
        return Response(f"/metrics is not public; to let {request.remote_addr} read it, set "
                        f"{setting_hint('metrics_allow')}\n", status=403, content_type="text/plain; charset=utf-8",
                        headers={"Cache-Control": "no-store"})
    chat_metrics = current_app.extensions["chat_metrics"]
    chat_metrics.loop_lag(current_app.extensions["chat_hub"].loop_lag)  # this worker's, as of this scrape
    return Response(chat_metrics.exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4,
                    headers={"Cache-Control": "no-store"})
