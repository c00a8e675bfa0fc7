"""The application factory: ``create_app(config)`` wires one module per concern into a Quart app."""

import asyncio
import logging
import time
from pathlib import Path

from quart import Quart
from quart_cors import cors

from protocol import close

from . import assets, consultants, health, metrics
from .budgets import AddressBudgets, StoreBudget
from .config import Config, ConfigError
from .conversations import Conversations, MemoryStore, SqliteStore
from .conversations.store import StoreUnavailable
from .security import install_security_headers
from .transport import asgi_socket, headers, polling, socket
from .transport.channels import Channels, new_instance_id
from .transport.heartbeat import BeatSlots, beat_forever
from .transport.hub import Hub, watch_loop_lag
from .transport.origins import OriginPolicy


def create_app(config=None):
    """Build the chat server app from a ``Config`` (defaults when None)."""
    config = config or Config()
    app = Quart(__name__)
    policy = OriginPolicy(config.allow_origins, allow_missing=config.allow_missing_origin)
    meter = app.extensions["chat_metrics"] = metrics.Metrics()
    store = meter.instrument_store(make_store(config))
    consultant = consultants.build(config)
    app.extensions["chat_config"] = config
    app.extensions["chat_origins"] = policy
    app.extensions["chat_hub"] = Hub(config.max_connections, config.max_connections_per_address)
    # The joined WebSockets the server beats (None: beats off, the widgets ping).
    beats = app.extensions["chat_beats"] = BeatSlots(config.heartbeat) if config.heartbeat else None
    # This process's name among the instances sharing a store: the prefix of its channel ids.
    instance_id = app.extensions.setdefault("chat_instance_id", new_instance_id())
    app.extensions["chat_channels"] = Channels(instance_id)  # the HTTP fallback's open channels
    app.extensions["chat_store"] = store
    app.extensions["chat_consultant"] = consultant
    address_budgets = AddressBudgets.from_config(config)
    store_budget = StoreBudget(config.store_max_bytes, config.store_warn_percent)
    app.extensions["chat_store_budget"] = store_budget
    conversations = Conversations(store, consultant, budgets=address_budgets, store_budget=store_budget,
                                  waiting_replies=config.address_waiting_replies, reply_lease=config.reply_lease)
    app.extensions["chat_conversations"] = conversations
    # Frames a shared store's bus may have missed while it reconnected: resent from the store.
    conversations.bus.on_gap = conversations.resync
    app.extensions["chat_connection_class"] = socket.ChatConnection
    if config.faults:
        from .testing import faults

        faults.install(app, config.faults)

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)  # exempt from quart-cors, readable only from metrics_allow
    assets.init_app(app, config)
    app.register_blueprint(socket.bp)
    app.register_blueprint(polling.bp)  # exempt from quart-cors: its CORS is per channel
    if config.store_kind == "redis":  # other instances' channels are asked of them (imports redis: ~50 ms)
        from .transport import forwarding
        forwarding.install(app, config)
    # /ws in front of Quart (its own Origin check, exact, 403 before upgrade, where quart-cors would
    # answer 400 and match by prefix); CORS headers for the allowed origins on HTTP routes.
    asgi_socket.install(app, socket.chat_socket)
    # quart-cors matches regexes with re.match (a prefix), so the patterns from our rules are anchored.
    cors(app, allow_origin=[rule.cors_pattern() for rule in policy.rules],
         allow_methods=["GET"], allow_credentials=False)
    install_security_headers(app, policy)
    headers.install(app)  # HTTP routes refuse oversized headers as the socket does (431)

    @app.before_serving
    async def open_store():
        await store.open()
        await conversations.bus.start()
        store_budget.update(await store.used_bytes())

    @app.while_serving
    async def background_tasks():
        hub = app.extensions["chat_hub"]
        tasks = [asyncio.create_task(_sweeper(store, address_budgets, config.sweep_interval)),
                 asyncio.create_task(_watch_store(store, store_budget, hub)),
                 asyncio.create_task(watch_loop_lag(hub, report=meter.loop_lag))]
        if store.shared:
            tasks.append(asyncio.create_task(_take_over_lapsed(conversations, config.reply_lease)))
        if beats is not None:
            tasks.append(asyncio.create_task(beat_forever(beats)))
        yield
        for task in tasks:
            task.cancel()

    @app.after_serving
    async def shut_down():
        await start_draining(app)
        await conversations.drain(timeout=5.0)
        await conversations.bus.stop()
        await store.close()
        if hasattr(consultant, "aclose"):
            await consultant.aclose()

    logging.getLogger("chat_widget").setLevel(config.log_level.upper())
    return app


async def start_draining(app):
    """Refuse new connections and close every HTTP channel with 1012; once (later calls return at once).

    Uvicorn closes the sockets with 1012 itself, but lets HTTP requests run to their end: the server
    calls this first (cli.ChatServer.shutdown), so a held long poll answers with the close at once;
    ``after_serving`` calls it again for servers run otherwise (the test client, other ASGI servers).
    """
    hub = app.extensions["chat_hub"]
    if hub.draining:
        return
    hub.draining = True
    if "chat_forwarding" in app.extensions:  # polls held here for another instance's channel: 404 now
        app.extensions["chat_forwarding"].release()
    await app.extensions["chat_channels"].close_all(close.RESTART, "server restarting")


def make_store(config):
    options = {"retention": config.retention, "max_entries": config.history_limit,
               "max_bytes": config.conversation_max_bytes}
    if config.store_kind == "memory":
        return MemoryStore(**options)
    if config.store_kind == "redis":
        from .conversations.redis_store import RedisStore

        return RedisStore(config.store, **options)
    path = Path(config.store)
    if not path.is_absolute():
        path = config.root / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteStore(path, **options)


async def _sweeper(store, address_budgets, every):
    """Expired conversations out of the store; addresses whose budgets are whole again out of memory."""
    log = logging.getLogger("chat_widget.store")
    while True:
        await asyncio.sleep(every)
        address_budgets.prune(time.monotonic())
        try:
            removed = await store.sweep()
            if removed:
                log.info("expired sessions removed count=%d", removed)
        except Exception:
            log.exception("session sweep failed")


async def check_store(config):
    """Before serving: a shared store that does not answer is a configuration error (exit 2), said in
    one line naming the setting, rather than a server that refuses every visitor."""
    if config.store_kind != "redis":
        return
    store = make_store(config)
    try:
        await store.open()
    except StoreUnavailable as error:
        raise ConfigError(f"store (--store or CHAT_WIDGET_STORE) does not answer: {error}") from None
    finally:
        await store.close()


async def _watch_store(store, budget, hub, every=1.0):
    """Keeps ``budget`` current (new conversations are refused within a second of the store filling up,
    and accepted again within a second of a sweep making room) and ``hub.store_trouble`` (a store that
    does not answer: readiness fails and new connections are closed with 4203 until it answers)."""
    log = logging.getLogger("chat_widget.store")
    while True:
        await asyncio.sleep(every)
        try:
            budget.update(await store.used_bytes())
        except Exception as error:
            if hub.store_trouble is None:
                log.warning("conversation store does not answer: %s", error)
            hub.store_trouble = str(error) or type(error).__name__
        else:
            if hub.store_trouble is not None:
                log.info("conversation store answers again")
            hub.store_trouble = None


async def _take_over_lapsed(conversations, lease):
    """A shared store: answer the questions of instances that died while answering them."""
    log = logging.getLogger("chat_widget.conversations")
    while True:
        await asyncio.sleep(max(0.5, lease / 4))
        try:
            started = await conversations.take_over_lapsed()
            if started:
                log.info("took over %d question(s) whose instance stopped answering", started)
        except StoreUnavailable:
            pass  # the store watch says so
        except Exception:
            log.exception("taking over lapsed questions failed")
