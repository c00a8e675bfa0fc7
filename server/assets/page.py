"""The page: index.html with the widget embedded (widget/embed.html), its PyScript config and settings.

The embed names every file PyScript will request in ``<link rel="modulepreload">`` and
``<link rel="preload" as="fetch" crossorigin>`` (from ``Runtime.preloads``), turns off every PyScript
plugin of both script types, and links the widget's own files by versioned URL.
"""

import json
from urllib.parse import urlsplit, urlunsplit

from markupsafe import Markup, escape
from quart import render_template_string

OTHER_TYPE = {"mpy": "py", "py": "mpy"}


def pyscript_config(runtime, python):
    """The config of the widget's script tag: the interpreter, the module files (``files`` delivery), plugins."""
    settings = {"interpreter": runtime.interpreter_url()}
    files = python.pyscript_files()
    if files:
        settings["files"] = files
    plugins = runtime.excluded_plugins()
    if plugins:
        settings["plugins"] = plugins
    return settings


def widget_settings(config):
    """What the Python widget reads at start: where to connect (socket, or HTTP fallback) and whom to
    offer when it cannot."""
    settings = {"socket_url": "/ws", "check_url": "/ws-check", "poll_url": "/poll", "fallback": config.http_fallback,
                "upgrade_interval": config.http_upgrade_interval, "runtime": config.runtime, "contact": config.contact, "version": config.version}
    if config.socket_url:
        # The socket's host serves /ws-check and the HTTP fallback too, over http(s).
        parts = urlsplit(config.socket_url)
        scheme = {"ws": "http", "wss": "https"}[parts.scheme]
        settings["socket_url"] = config.socket_url
        settings["check_url"] = urlunsplit((scheme, parts.netloc, "/ws-check", "", ""))
        settings["poll_url"] = urlunsplit((scheme, parts.netloc, "/poll", "", ""))
    return settings


def preload_links(preloads):
    """The ``<link>`` tags for [(rel, url)]."""
    lines = []
    for rel, url in preloads:
        if rel == "modulepreload":
            lines.append(f'<link rel="modulepreload" href="{escape(url)}">')
        else:  # crossorigin: PyScript and the runtimes fetch() in cors mode; without it the file loads twice
            lines.append(f'<link rel="preload" as="fetch" crossorigin href="{escape(url)}">')
    return Markup("\n".join(lines))


def other_type_config(runtime):
    """PyScript loads the plugins of both script types (py and mpy); this turns off the unused type's."""
    plugins = runtime.excluded_plugins()
    if not plugins:
        return Markup("")
    other = OTHER_TYPE[runtime.script_type()]
    return Markup(f"<{other}-config hidden>{escape(json.dumps({'plugins': plugins}))}</{other}-config>")


async def render_widget(assets):
    """widget/embed.html rendered for this app's ``Assets``."""
    config, runtime, python = assets.config, assets.runtime, assets.python
    template = (config.root / "widget" / "embed.html").read_text(encoding="utf-8")
    python_urls = python.urls()
    return Markup(await render_template_string(
        template,
        script_type=runtime.script_type(),
        pyscript_config=json.dumps(pyscript_config(runtime, python)),
        widget_settings=json.dumps(widget_settings(config)),
        loading_timeout=60 if config.runtime == "pyodide" else 20,
        preload_links=preload_links(runtime.preloads(python_urls)),
        other_type_config=other_type_config(runtime),
        core_js=runtime.vendor_url("pyscript", "core.js"),
        stylesheet=assets.files.versioned_url(config.root, "widget/widget.css"),
        boot_js=assets.files.versioned_url(config.root, "widget/boot.js"),
        main_src=python_urls[0],
    ))


async def render_page(assets):
    """index.html with the widget in ``{{ chat_widget }}``."""
    page = (assets.config.root / "index.html").read_text(encoding="utf-8")
    return await render_template_string(page, chat_widget=await render_widget(assets))
