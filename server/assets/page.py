"""The pages: the widget's frame (widget/frame.html, one per language), the host page's script
(widget/embed.js, ``/embed.js``) and the demo page (index.html, which embeds the widget with that one tag).

The frame names every file PyScript will request in ``<link rel="modulepreload">`` and
``<link rel="preload" as="fetch" crossorigin>`` (from ``Runtime.preloads``), turns off every PyScript
plugin of both script types, and links the widget's own files by versioned URL. Its settings carry the
visitor's word catalogue (``server/languages.py``).
"""

import json
from urllib.parse import urlsplit, urlunsplit

from markupsafe import Markup, escape
from quart import current_app

from protocol.frames import VERSION as PROTOCOL_VERSION

from .. import languages

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


FRAME_PATH = "/embed/frame"


def json_for_html(value):
    """JSON that is safe inside a ``<script>`` element: no ``</script>`` or ``<!--`` can end it early."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def widget_settings(config, words=None):
    """What the Python widget reads at start: where to connect (socket, or HTTP fallback), whom to
    offer when it cannot, and its words."""
    settings = {"words": words or config.languages["en"], "socket_url": "/ws", "check_url": "/ws-check",
                "poll_url": "/poll", "fallback": config.http_fallback, "upgrade_interval": config.http_upgrade_interval,
                "runtime": config.runtime, "contact": config.contact, "version": config.version,
                "protocol_version": PROTOCOL_VERSION}  # for widget/boot.js's early socket (?v=)
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


def compiled(assets, source):
    """The frame's template, compiled once per text: the frame is asked for on every page view of every
    site that embeds the widget, and Jinja's compile was half of each rendering (about 2 ms)."""
    template = assets.templates.get(source)
    if template is None:
        template = assets.templates[source] = current_app.jinja_env.from_string(source)  # autoescaped
    return template


async def render_frame(assets, lang="en"):
    """widget/frame.html in the language ``lang`` (a known catalogue, else English)."""
    config, runtime, python = assets.config, assets.runtime, assets.python
    words = languages.choose(config.languages, lang)
    template = (config.root / "widget" / "frame.html").read_text(encoding="utf-8")
    python_urls = python.urls()
    return await compiled(assets, template).render_async(
        words=words,
        script_type=runtime.script_type(),
        pyscript_config=json.dumps(pyscript_config(runtime, python)),
        widget_settings=json_for_html(widget_settings(config, words)),
        loading_timeout=60 if config.runtime == "pyodide" else 20,
        preload_links=preload_links(runtime.preloads(python_urls)),
        other_type_config=other_type_config(runtime),
        core_js=runtime.vendor_url("pyscript", "core.js"),
        stylesheet=assets.files.versioned_url(config.root, "widget/widget.css"),
        boot_js=assets.files.versioned_url(config.root, "widget/boot.js"),
        main_src=python_urls[0],
    )


def render_embed_script(config):
    """widget/embed.js with the launcher's words of every language and the frame's path filled in."""
    script = (config.root / "widget" / "embed.js").read_text(encoding="utf-8")
    return (script.replace("/*LAUNCHER_WORDS*/{}", json.dumps(languages.launcher_words(config.languages), ensure_ascii=False))
            .replace("/*FRAME_PATH*/\"\"", json.dumps(FRAME_PATH)))


def render_page(config):
    """The demo page, index.html: a plain site page with the one-tag snippet (``/embed.js``)."""
    return (config.root / "index.html").read_text(encoding="utf-8")
