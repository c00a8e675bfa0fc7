"""The ``chat-widget`` command line: ``serve`` runs the demo site and chat server."""

import asyncio
import contextlib
import importlib
import logging
import signal
import sys

import click
import uvicorn

from . import gcpolicy
from .assets import missing_runtime_assets
from .config import SETTINGS, Config, ConfigError
from .transport.ws_protocol import HEAD_BUFFER_BYTES, ChatH11Protocol, ChatWebSocketProtocol


class Commands(click.Group):
    """The subcommands, ``doctor`` imported only when it runs: ``serve`` does not pay for its imports
    (websockets' client, about 50 ms of every start; bench/startup.py)."""

    LAZY = {"doctor": "server.doctor"}  # command -> module defining it under that name

    def list_commands(self, ctx):
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx, name):
        if name in self.LAZY:
            return getattr(importlib.import_module(self.LAZY[name]), name)
        return super().get_command(ctx, name)


@click.group(cls=Commands)
def main():
    """A dependable website chat widget and its server."""


def setting_options(command):
    """One click option per command-line setting of ``config.SETTINGS``; defaults and environment
    variables are applied by ``Config.from_environment``, so each is written once."""
    for setting in reversed([s for s in SETTINGS if s.option]):
        shown = "" if setting.default in ("", ()) else f" [default: {setting.default}]"
        help_text = f"{setting.help}{shown} (env: {setting.env})"
        if setting.kind == "flag":
            option = click.option(setting.option, setting.name, is_flag=True, default=None, help=help_text)
        elif setting.kind == "multiple":
            option = click.option(_singular(setting.option), setting.name, multiple=True, help=help_text)
        else:
            option = click.option(setting.option, setting.name, default=None, help=help_text)
        command = option(command)
    return command


def _singular(option):
    """A repeatable option is named for one value: ``--allow-origin``, ``--trusted-proxy``."""
    return option[:-3] + "y" if option.endswith("ies") else option.rstrip("s")


@main.command()
@setting_options
def serve(**given):
    """Serve the demo site, the widget and the chat socket."""
    try:
        config = Config.from_environment(**given)
        missing = missing_runtime_assets(config)
        if missing:
            raise ConfigError(f"runtime {config.runtime}: missing {', '.join(missing)}; install them with `npm ci`"
                              " in the project folder (or run `make serve`)")
    except ConfigError as error:
        click.echo(f"chat-widget: configuration error: {error}", err=True)
        sys.exit(2)
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s")
    try:
        if config.workers > 1:
            from . import workers

            sys.exit(workers.run(config))
        asyncio.run(run_server(config))
    except ConfigError as error:
        click.echo(f"chat-widget: configuration error: {error}", err=True)
        sys.exit(2)


def uvicorn_config(app, config):
    # websockets-sansio without permessage-deflate: about 34 KiB per socket against Hypercorn's 138 KiB
    # once a message has passed (../shared/notes/server-capacity.md); protocol pings every 20 s keep
    # proxies from timing out idle sockets and reap dead clients. Request headers: one limit for the
    # socket and HTTP routes (transport/headers.py); h11's buffer is only the ceiling above it.
    return uvicorn.Config(
        app, host=config.host, port=config.port, ws=ChatWebSocketProtocol, ws_per_message_deflate=False,
        http=ChatH11Protocol, h11_max_incomplete_event_size=HEAD_BUFFER_BYTES,
        ws_max_size=config.max_message_bytes, ws_ping_interval=20.0, ws_ping_timeout=20.0,
        # X-Forwarded-For and -Proto only from the configured proxies (uvicorn would trust 127.0.0.1 by
        # default, letting any local client choose its address for the per-address budgets).
        proxy_headers=bool(config.trusted_proxies), forwarded_allow_ips=list(config.trusted_proxies) or None,
        lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=5,
    )


class ChatServer(uvicorn.Server):
    """Uvicorn's server, but SIGTERM/SIGINT end in a clean exit 0 after the graceful shutdown.

    Uvicorn re-raises the captured signal after shutting down, so a graceful stop would exit -15; an
    orchestrator reads that as a crash.
    """

    @contextlib.contextmanager
    def capture_signals(self):
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.handle_exit, signum, None)
        try:
            yield
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    async def shutdown(self, sockets=None):
        # Uvicorn closes sockets with 1012 but lets HTTP requests run to their end: drain the app first,
        # so a long poll held open answers with 1012 at once instead of after the graceful timeout.
        from .app import start_draining

        await start_draining(self.config.app)
        await super().shutdown(sockets)


async def run_server(config, sock=None, announce_url=True):
    """Serve until stopped; on ``sock`` (a worker of ``--workers``) instead of binding host and port."""
    from .app import check_store, create_app

    if sock is None:
        await check_store(config)  # a worker's parent checked it already
    app = create_app(config)
    server = ChatServer(uvicorn_config(app, config))
    serving = asyncio.create_task(server.serve(sockets=[sock] if sock is not None else None))
    while not server.started and not serving.done():
        await asyncio.sleep(0.02)
    if server.started:  # the app, its knowledge index and the imports are built: frozen from here
        hub = app.extensions["chat_hub"]
        gcpolicy.install(asyncio.get_running_loop(), config.gc, connections=lambda: len(hub.open))
    if server.started and announce_url:
        announce(config, server.servers[0].sockets[0].getsockname()[1])
    await serving
    if not server.started:
        sys.exit(1)


def announce(config, port, more=""):
    """The one line that says where the server is (tests and scripts read it)."""
    host = f"[{config.host}]" if ":" in config.host else config.host
    click.echo(f"chat-widget: serving http://{host}:{port}/ (runtime {config.runtime}{more})", err=False)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
