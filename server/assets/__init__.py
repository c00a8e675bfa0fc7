"""Static files: the demo page with the widget embedded, the widget's Python, and the browser runtimes.

The runtimes come from npm packages pinned in package-lock.json and are served from this server, so a
page never requests anything from another host. What makes the first connection fast and the
download small is measured in docs/performance.md; each module says its part:

- ``runtime``: the installed packages (versions, PyScript's chunks and plugins, preloads).
- ``bundle``: the widget's Python (module discovery, ``strip_python``, the one-file bundle).
- ``page``: the widget's frame (widget/frame.html), ``/embed.js`` and the demo page (index.html).
- ``compression``: compressed copies on disk, made in a background thread.
- ``http``: content negotiation, validators, 304s, bodies in memory.
- ``routes``: the blueprint and the warm-up at start.

All state (file hashes, bodies, compressed variants, the compression thread) lives in one ``Assets``
per app, made by ``init_app`` and kept in ``app.extensions["chat_assets"]``; settings come only from
the ``Config``.
"""

from .bundle import ENTRY, WidgetPython, strip_python
from .compression import CompressedStore
from .fileinfo import FileMemo
from .http import Responder
from .routes import bp
from .runtime import Runtime, missing_runtime_assets
from .snapshot import Snapshots

__all__ = ["Assets", "init_app", "missing_runtime_assets", "strip_python"]


class Assets:
    """One app's assets: what is known about the files, the compressed copies, the caches of answers."""

    def __init__(self, config):
        self.config = config
        self.files = FileMemo()
        self.runtime = Runtime(config, self.files)
        self.python = WidgetPython(config, self.files)
        self.store = CompressedStore(config.asset_cache)
        self.http = Responder(self.files, self.store)
        self.runtime.snapshots = Snapshots(config, self.files, self.store)  # the pyodide_snapshot experiment
        self.templates = {}  # template text -> compiled Jinja template (page.compiled)

    def preloads(self):
        """[(rel, url)] for everything PyScript will request for this app's page."""
        return self.runtime.preloads(self.python.urls())

    def runtime_files(self, runtime=None):
        """Every file the page of ``runtime`` (default: the configured one) loads from this server, for
        warming the compressed copies."""
        root = self.config.root
        files = self.runtime.runtime_files(runtime)
        files += [root / name for name in ("widget/widget.css", "widget/boot.js", ENTRY, *self.python.modules())]
        return [path for path in files if path.is_file()]


def init_app(app, config):
    """Serve the assets from ``app``, with state of its own in ``app.extensions["chat_assets"]``."""
    app.extensions["chat_assets"] = Assets(config)
    app.register_blueprint(bp)
