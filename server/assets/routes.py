"""The asset routes: the demo page, ``/embed.js`` and the widget's frame, the widget's files, the shared
protocol package, the runtimes.

Every route finds its app's state in ``current_app.extensions["chat_assets"]`` (an ``Assets``).
Versioned URLs (``?v=<content hash>``, ``/vendor/<package>@<version>/``) are immutable; the same
files at unversioned URLs revalidate. A path that leaves its folder is a 404.
"""

import asyncio
import logging
import threading
from pathlib import Path

from quart import Blueprint, abort, current_app, request
from werkzeug.security import safe_join

from .bundle import BUNDLE_NAME
from .fileinfo import content_version
from .http import IMMUTABLE, REVALIDATE, SHORT_LIVED, content_type
from .page import FRAME_PATH, render_embed_script, render_frame, render_page
from . import snapshot as pyodide_snapshot
from .runtime import VENDOR

log = logging.getLogger("chat_widget.assets")
bp = Blueprint("assets", __name__)

WIDGET_SUFFIXES = (".py", ".css", ".js")
PROTOCOL_SUFFIXES = (".py",)
FRAME_PREPARATION = "chat_assets_frame_preparation"  # app.extensions key: the start-up task


def _assets():
    return current_app.extensions["chat_assets"]


def _inside(folder, filename):
    """The file below ``folder`` named by a URL path, or None for traversal attempts and non-files."""
    joined = safe_join(str(folder), filename)
    if joined is None:
        return None
    path = Path(joined)
    try:
        if not path.resolve().is_relative_to(Path(folder).resolve()) or not path.is_file():
            return None
    except OSError:
        return None
    return path


async def _serve_versioned(assets, folder, name, suffixes):
    """A file below the project's ``folder``: immutable when ``?v=`` is its content hash, else revalidated."""
    if not name.endswith(suffixes):
        abort(404)
    path = _inside(assets.config.root / folder, name)
    if path is None:
        abort(404)
    info = assets.files.info(path)
    immutable = info is not None and request.args.get("v") == info.version
    return await assets.http.serve_file(path, IMMUTABLE if immutable else REVALIDATE)


@bp.route("/")
async def index():
    """The demo site's page: a plain host page with the one-tag snippet."""
    assets = _assets()
    html = render_page(assets.config)
    response = await assets.http.serve_generated(html.encode("utf-8"), "text/html; charset=utf-8", REVALIDATE)
    # A host page's policy: what docs/embedding.md asks of any site, with no 'unsafe-eval' or 'unsafe-inline'.
    response.headers["Content-Security-Policy"] = current_app.extensions["chat_host_csp"]
    return response


@bp.route("/embed.js")
async def embed_script():
    """The one tag's script (public contract). Cached for minutes: it is on every page view of a site."""
    assets = _assets()
    return await assets.http.serve_generated(render_embed_script(assets.config).encode("utf-8"),
                                             "text/javascript; charset=utf-8", SHORT_LIVED)


@bp.route(FRAME_PATH)
async def frame():
    """The widget itself, in the visitor's language (``?lang=``; unknown ones get English). Only the
    allowed origins may frame it (the CSP's frame-ancestors)."""
    assets = _assets()
    starting = current_app.extensions.get(FRAME_PREPARATION)
    if starting is not None and not starting.done():
        await asyncio.shield(starting)  # the Python bundle is being built in a thread: do not build it twice
    html = await render_frame(assets, request.args.get("lang", "en"))
    return await assets.http.serve_generated(html.encode("utf-8"), "text/html; charset=utf-8", REVALIDATE)


@bp.route("/widget/<path:name>")
async def widget_file(name):
    """The widget's static files and Python (``/widget/core/lifecycle.py``), and the generated bundle."""
    assets = _assets()
    if name == BUNDLE_NAME:
        data = assets.python.bundle()
        immutable = request.args.get("v") == content_version(data)
        return await assets.http.serve_generated(data, content_type(name), IMMUTABLE if immutable else REVALIDATE)
    return await _serve_versioned(assets, "widget", name, WIDGET_SUFFIXES)


@bp.route("/protocol/<path:name>")
async def protocol_file(name):
    """The shared protocol package, imported by the widget (``files`` delivery fetches it from here)."""
    return await _serve_versioned(_assets(), "protocol", name, PROTOCOL_SUFFIXES)


@bp.route("/vendor/<package>/<path:filename>")
async def vendor_file(package, filename):
    """/vendor/<package>@<version>/<file> (immutable) or /vendor/<package>/<file> (revalidated)."""
    name, at, version = package.partition("@")
    if name == pyodide_snapshot.PACKAGE:
        return await _snapshot_file(version, filename)
    folder = VENDOR.get(name)
    if folder is None:
        abort(404)
    assets = _assets()
    if at and version != assets.runtime.package_version(name):
        abort(404)  # another release's file: never cache this one under that URL
    path = _inside(assets.config.root / folder, filename)
    if path is None:
        abort(404)
    return await assets.http.serve_file(path, IMMUTABLE if at else REVALIDATE)


async def _snapshot_file(version, filename):
    """The pyodide_snapshot experiment (snapshot.py): the interpreter module and the snapshot, immutable."""
    assets = _assets()
    info = assets.runtime.snapshot()
    if info is None or version != info.version:
        abort(404)
    if filename == pyodide_snapshot.WRAPPER:
        return await assets.http.serve_generated(assets.runtime.snapshot_wrapper(info).encode("utf-8"),
                                                 "text/javascript; charset=utf-8", IMMUTABLE)
    if filename == pyodide_snapshot.SNAPSHOT:
        return await assets.http.serve_file(info.path, IMMUTABLE)
    abort(404)


@bp.route("/favicon.ico")
async def favicon():
    return "", 204


@bp.before_app_serving
async def warm_compressed_copies():
    """At start, without waiting: compressed copies of the runtime's files and of the page and bundle."""
    assets = _assets()
    assets.store.warm([assets.files.info(path) for path in assets.runtime_files()])
    # Not awaited: the frame needs the Python bundle, hundreds of ms of CPU (strip_python of every module)
    # that held up the bind and so the first page (bench/startup.py); the frame's first request awaits it.
    current_app.extensions[FRAME_PREPARATION] = asyncio.create_task(_prepare_frame(assets))


async def _prepare_frame(assets):
    try:
        await asyncio.to_thread(assets.python.urls)  # builds the bundle off the event loop
        page = (await render_frame(assets)).encode("utf-8")
    except Exception:  # noqa: BLE001 - the first request will report it
        log.exception("rendering the widget's frame at start failed")
        page = None
    threading.Thread(target=_warm_generated, args=(assets, page), name="chat-widget-warm", daemon=True).start()


def _warm_generated(assets, page):
    """Compress the (English) frame and the Python bundle once, before the first visitor asks."""
    try:
        if page is not None:
            assets.http.generated.get(page)
        if assets.config.python_delivery == "bundle":
            assets.http.generated.get(assets.python.bundle())
    except Exception:  # noqa: BLE001 - the first request will report it
        log.exception("preparing the page or the widget's Python bundle failed")
