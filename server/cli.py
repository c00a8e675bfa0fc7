"""The ``chat-widget`` command line: ``serve`` runs the demo site and chat server."""

import asyncio
import contextlib
import logging
import os
import signal
import sys

import click
import uvicorn

from .assets import missing_runtime_assets
from .config import LOG_LEVELS, RUNTIMES, Config, ConfigError
from .doctor import doctor
from .ws_protocol import ChatWebSocketProtocol


@click.group()
def main():
    """A dependable website chat widget and its server."""


@main.command()
@click.option("--host", envvar="CHAT_WIDGET_HOST", default="127.0.0.1", show_default=True,
              help="Interface to listen on.")
@click.option("--port", envvar="CHAT_WIDGET_PORT", default="8000", show_default=True,
              help="Port to listen on (0 picks a free one).")
@click.option("--allow-origin", "allow_origins", envvar="CHAT_WIDGET_ALLOW_ORIGINS", multiple=True,
              help="A site allowed to use the chat (repeatable; env: space-separated). "
                   "Default: only this server's own origin.")
@click.option("--allow-missing-origin", envvar="CHAT_WIDGET_ALLOW_MISSING_ORIGIN", is_flag=True, default=False,
              help="Accept socket handshakes without an Origin header (non-browser clients).")
@click.option("--runtime", envvar="CHAT_WIDGET_RUNTIME", default="micropython", show_default=True,
              help=f"Python runtime for the widget: {' or '.join(RUNTIMES)}.")
@click.option("--log-level", envvar="CHAT_WIDGET_LOG_LEVEL", default="info", show_default=True,
              help=f"One of {', '.join(LOG_LEVELS)}.")
@click.option("--store", envvar="CHAT_WIDGET_STORE", default="var/chat.sqlite3", show_default=True,
              help="SQLite file for conversations (relative to the project), or 'memory'.")
@click.option("--retention", envvar="CHAT_WIDGET_RETENTION", default="1800", show_default=True,
              help="Seconds a quiet conversation is kept and can be resumed.")
@click.option("--consultant", envvar="CHAT_WIDGET_CONSULTANT", default="knowledge", show_default=True,
              help="Who answers: knowledge (offline, from --knowledge-path), openai (any OpenAI-compatible API), helpdesk.")
@click.option("--knowledge-path", envvar="CHAT_WIDGET_KNOWLEDGE_PATH", default="",
              help="Markdown knowledge file (default: the demo's knowledge.md).")
@click.option("--openai-base-url", envvar="CHAT_WIDGET_OPENAI_BASE_URL", default="",
              help="e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1; key from CHAT_WIDGET_OPENAI_API_KEY.")
@click.option("--openai-model", envvar="CHAT_WIDGET_OPENAI_MODEL", default="", help="Model name for --consultant openai.")
@click.option("--system-prompt", envvar="CHAT_WIDGET_SYSTEM_PROMPT", default="", help="Overrides the default consultant prompt.")
@click.option("--socket-url", envvar="CHAT_WIDGET_SOCKET_URL", default="",
              help="Public ws(s):// URL of the socket, when it is not /ws on the page's host (e.g. behind a proxy).")
@click.option("--contact-email", envvar="CHAT_WIDGET_CONTACT_EMAIL", default="", help="Shown when chat is unavailable.")
@click.option("--contact-phone", envvar="CHAT_WIDGET_CONTACT_PHONE", default="", help="Shown when chat is unavailable.")
@click.option("--contact-url", envvar="CHAT_WIDGET_CONTACT_URL", default="", help="A contact page, shown when chat is unavailable.")
def serve(**settings):
    """Serve the demo site, the widget and the chat socket."""
    try:
        # Fault injection exists for the delivery tests; it is deliberately not a command-line option.
        config = Config(faults=os.environ.get("CHAT_WIDGET_FAULTS", ""), **settings)
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
        asyncio.run(run_server(config))
    except ConfigError as error:
        click.echo(f"chat-widget: configuration error: {error}", err=True)
        sys.exit(2)


def uvicorn_config(app, config):
    # websockets-sansio without permessage-deflate: about 34 KiB per socket against Hypercorn's 138 KiB
    # once a message has passed (../shared/notes/server-capacity.md); protocol pings every 20 s keep
    # proxies from timing out idle sockets and reap dead clients.
    return uvicorn.Config(
        app, host=config.host, port=config.port, ws=ChatWebSocketProtocol, ws_per_message_deflate=False,
        ws_max_size=config.max_message_bytes, ws_ping_interval=20.0, ws_ping_timeout=20.0,
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


async def run_server(config):
    from .app import create_app

    server = ChatServer(uvicorn_config(create_app(config), config))
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.02)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        host = f"[{config.host}]" if ":" in config.host else config.host
        click.echo(f"chat-widget: serving http://{host}:{port}/ (runtime {config.runtime})", err=False)
        sys.stdout.flush()
    await serving
    if not server.started:
        sys.exit(1)


main.add_command(doctor)

if __name__ == "__main__":
    main()
