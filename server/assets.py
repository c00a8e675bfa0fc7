"""Static files: the demo page with the widget embedded, the widget's Python, and the browser runtimes.

The runtimes come from npm packages pinned in package-lock.json and are served from this server, so a
page never requests anything from another host.
"""

import json
import mimetypes
from urllib.parse import urlsplit, urlunsplit

from markupsafe import Markup
from quart import Blueprint, abort, current_app, render_template_string, send_from_directory

bp = Blueprint("assets", __name__)

mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/x-python", ".py")

# URL prefix -> folder below the project root (installed by `npm ci`).
VENDOR = {
    "pyscript": "node_modules/@pyscript/core/dist",
    "micropython": "node_modules/@micropython/micropython-webassembly-pyscript",
    "pyodide": "node_modules/pyodide",
}
RUNTIME_ENTRY = {
    "micropython": ("micropython", "micropython.mjs", "mpy"),
    "pyodide": ("pyodide", "pyodide.mjs", "py"),
}
WIDGET_SUFFIXES = (".py", ".css", ".js")


def missing_runtime_assets(config):
    """Files the configured runtime needs that are not installed (empty when all are there)."""
    folder, entry, _ = RUNTIME_ENTRY[config.runtime]
    needed = [config.root / VENDOR["pyscript"] / "core.js", config.root / VENDOR[folder] / entry]
    return [str(path.relative_to(config.root)) for path in needed if not path.is_file()]


def widget_modules(config):
    """The widget's Python modules, copied into the runtime's file system by PyScript."""
    return sorted(path.name for path in (config.root / "widget").glob("*.py") if path.name != "main.py")


def pyscript_config(config):
    folder, entry, _ = RUNTIME_ENTRY[config.runtime]
    files = {f"/widget/{name}": f"./widget/{name}" for name in widget_modules(config)}
    return {"interpreter": f"/vendor/{folder}/{entry}", "files": files}


def widget_settings(config):
    """What the Python widget reads at start: where to connect and whom to offer when it cannot."""
    settings = {"socket_url": "/ws", "check_url": "/ws-check", "runtime": config.runtime,
                "contact": config.contact, "version": "0.1.0"}
    if config.socket_url:
        parts = urlsplit(config.socket_url)
        settings["socket_url"] = config.socket_url
        settings["check_url"] = urlunsplit(({"ws": "http", "wss": "https"}[parts.scheme], parts.netloc, "/ws-check", "", ""))
    return settings


async def render_widget(config):
    template = (config.root / "widget" / "embed.html").read_text(encoding="utf-8")
    _, _, script_type = RUNTIME_ENTRY[config.runtime]
    return Markup(await render_template_string(
        template,
        script_type=script_type,
        pyscript_config=json.dumps(pyscript_config(config)),
        widget_settings=json.dumps(widget_settings(config)),
        loading_timeout=60 if config.runtime == "pyodide" else 20,
    ))


@bp.route("/")
async def index():
    config = current_app.extensions["chat_config"]
    page = (config.root / "index.html").read_text(encoding="utf-8")
    html = await render_template_string(page, chat_widget=await render_widget(config))
    return html, 200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-cache"}


@bp.route("/widget/<name>")
async def widget_file(name):
    if not name.endswith(WIDGET_SUFFIXES):
        abort(404)
    config = current_app.extensions["chat_config"]
    return await send_from_directory(config.root / "widget", name)


@bp.route("/vendor/<package>/<path:filename>")
async def vendor_file(package, filename):
    folder = VENDOR.get(package)
    if folder is None:
        abort(404)
    config = current_app.extensions["chat_config"]
    return await send_from_directory(config.root / folder, filename)


@bp.route("/favicon.ico")
async def favicon():
    return "", 204
