"""Static files: the demo page with the widget embedded, the widget's Python, and the browser runtimes.

The runtimes come from npm packages pinned in package-lock.json and are served from this server, so a
page never requests anything from another host.

What makes the first connection fast and the download small (measured in docs/performance.md):

- Versioned URLs. Runtime files live at ``/vendor/<package>@<version>/<file>`` (the version read from the
  installed package.json) and the widget's own files carry a content hash (``?v=<hash>``); both are sent
  with ``Cache-Control: public, max-age=31536000, immutable``, so a repeat visit fetches none of them.
  Unversioned URLs (``/vendor/<package>/<file>``, ``/widget/<name>``) and the page itself are
  ``no-cache`` with an ETag and Last-Modified, answered 304 when unchanged.
- Compression. Compressible files are sent brotli (quality 11) or gzip, whichever the browser offers
  (``Content-Encoding``, ``Vary: Accept-Encoding``, the original Content-Type kept: ``application/wasm``
  must stay for streaming compilation). Compressed copies are made once, in a background thread when the
  server starts (the configured runtime's files first) or on first request, and kept in
  ``var/compressed/`` (``$CHAT_WIDGET_ASSET_CACHE`` overrides) under the file's content hash.
  ``scripts/compress-assets`` makes them ahead of time.
- Preloads. The page names every file PyScript will ask for in ``<link rel="modulepreload">`` (core.js,
  the hashed chunks it imports, the runtime's .mjs) and ``<link rel="preload" as="fetch" crossorigin>``
  (the .wasm and the widget's Python), so they download in parallel instead of in a chain of round
  trips. The list is read from the installed package at start, never hard-coded.
- PyScript plugins the widget does not use are excluded (their names read from the installed core).
- The widget's Python goes as one generated file (``/widget/main.bundle.py``): it writes the widget
  modules where PyScript's ``files`` config would, then runs main.py. ``CHAT_WIDGET_PYTHON_DELIVERY=files``
  switches back to one request per module (for comparison).
"""

import ast
import asyncio
import collections
import gzip
import hashlib
import io
import json
import logging
import mimetypes
import os
import queue
import re
import threading
import time
import tokenize
from concurrent.futures import Future
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from markupsafe import Markup, escape
from quart import Blueprint, Response, abort, current_app, render_template_string, request
from werkzeug.security import safe_join

try:
    import brotli
except ImportError:  # gzip only (add `brotli` to the dependencies)
    brotli = None

log = logging.getLogger("chat_widget.assets")
bp = Blueprint("assets", __name__)

mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/x-python", ".py")
mimetypes.add_type("application/json", ".map")

# URL prefix -> folder below the project root (installed by `npm ci`).
VENDOR = {
    "pyscript": "node_modules/@pyscript/core/dist",
    "micropython": "node_modules/@micropython/micropython-webassembly-pyscript",
    "pyodide": "node_modules/pyodide",
}
# URL prefix -> the npm package.json that gives its version.
PACKAGE_JSON = {
    "pyscript": "node_modules/@pyscript/core/package.json",
    "micropython": "node_modules/@micropython/micropython-webassembly-pyscript/package.json",
    "pyodide": "node_modules/pyodide/package.json",
}
RUNTIME_ENTRY = {
    "micropython": ("micropython", "micropython.mjs", "mpy"),
    "pyodide": ("pyodide", "pyodide.mjs", "py"),
}
# What each runtime loads besides its entry module: JavaScript modules (import()) and fetched files.
RUNTIME_MODULES = {"micropython": ("micropython.mjs",), "pyodide": ("pyodide.mjs", "pyodide.asm.mjs")}
RUNTIME_FETCHES = {"micropython": ("micropython.wasm",),
                   "pyodide": ("pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json")}
OTHER_TYPE = {"mpy": "py", "py": "mpy"}
WIDGET_SUFFIXES = (".py", ".css", ".js")
BUNDLE_NAME = "main.bundle.py"

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
COMPRESSIBLE = {".js", ".mjs", ".wasm", ".css", ".py", ".json", ".map", ".html", ".txt", ".ts", ".svg"}
SUFFIX = {"br": "br", "gzip": "gz"}
SMALL = 256 * 1024           # files up to this size are compressed while the first request waits
MEMORY_LIMIT = 64 << 20      # bytes of file bodies kept in memory
MEMORY_FILE_LIMIT = 8 << 20  # larger bodies are streamed from disk
LOCK_STALE = 300             # seconds after which another process's compression lock is ignored
BROTLI_QUALITY = 11
GZIP_LEVEL = 9


# ---- installed packages ----------------------------------------------------------------------------

_memo = {}


def _cached(kind, path, compute):
    """compute(path) remembered until the file's size or mtime changes (None if it does not exist)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (kind, str(path))
    stamp = (stat.st_mtime_ns, stat.st_size)
    hit = _memo.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    value = compute(path)
    _memo[key] = (stamp, value)
    return value


def package_version(config, package):
    """The installed npm version of a vendor package (None if it is not installed)."""
    def read(path):
        try:
            return str(json.loads(path.read_text(encoding="utf-8"))["version"])
        except (OSError, ValueError, KeyError):
            return None
    return _cached("version", config.root / PACKAGE_JSON[package], read)


def vendor_url(config, package, filename):
    """The versioned, immutable URL of a runtime file: /vendor/<package>@<version>/<file>."""
    version = package_version(config, package)
    return f"/vendor/{package}@{version}/{filename}" if version else f"/vendor/{package}/{filename}"


_STATIC_IMPORT = re.compile(r"""(?:\bfrom|\bimport)\s*["']\./([\w.\-]+\.m?js)["']""")
_PLUGIN_ENTRY = re.compile(r"""["']?([a-z][\w-]*)["']?:\(\)=>(?:import\(["']\./([\w.\-]+\.m?js)["']\)|Promise\.resolve\(\)(?:\.then\(function\(\)\{return \w+\}\))?)""")


def _read_text(path):
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _pyscript_manifest(core_js):
    """From the installed core.js: the chunks it imports statically (in load order) and the plugin registry.

    Returns {"chunks": [file, ...], "plugins": {name: chunk file or None}}. The chunk names are hashed
    and change with every PyScript release, hence read here and not written down anywhere.
    """
    folder = core_js.parent
    chunks, pending = [], [core_js.name]
    while pending:
        name = pending.pop(0)
        if name in chunks or not (folder / name).is_file():
            continue
        chunks.append(name)
        pending.extend(_STATIC_IMPORT.findall(_read_text(folder / name)))
    plugins = {}
    for name in chunks:
        text = _read_text(folder / name)
        # The registry is one object literal: the run of adjacent entries that contains "error".
        runs, current, last_end = [], [], None
        for match in _PLUGIN_ENTRY.finditer(text):
            if last_end is not None and match.start() - last_end > 3:
                runs.append(current)
                current = []
            current.append(match)
            last_end = match.end()
        runs.append(current)
        for run in runs:
            if any(m.group(1) == "error" for m in run):
                plugins = {m.group(1): m.group(2) for m in run}
                break
        if plugins:
            break
    return {"chunks": chunks, "plugins": plugins}


def pyscript_manifest(config):
    core_js = config.root / VENDOR["pyscript"] / "core.js"
    return _cached("manifest", core_js, _pyscript_manifest) or {"chunks": [], "plugins": {}}


def excluded_plugins(config):
    """``"!name"`` for every PyScript plugin: the widget uses none (not even ``error``, which would
    print Python errors into the host page; boot.js shows a failure instead)."""
    return [f"!{name}" for name in pyscript_manifest(config)["plugins"]]


def preloads(config):
    """[(rel, url)] for everything PyScript will request, in the order it needs them."""
    manifest = pyscript_manifest(config)
    folder = RUNTIME_ENTRY[config.runtime][0]
    modules = [vendor_url(config, "pyscript", name) for name in manifest["chunks"]]
    # The error plugin's chunk is imported even when the plugin is excluded (to turn it off).
    error_chunk = manifest["plugins"].get("error")
    if error_chunk:
        modules.append(vendor_url(config, "pyscript", error_chunk))
    modules += [vendor_url(config, folder, name) for name in RUNTIME_MODULES[config.runtime]]
    fetches = [vendor_url(config, folder, name) for name in RUNTIME_FETCHES[config.runtime]
               if (config.root / VENDOR[folder] / name).is_file()]
    if config.runtime == "micropython":
        # Pyodide needs seconds of CPU before it asks for the Python: preloading it then only earns
        # Chromium's "preloaded but not used within a few seconds" console warning.
        fetches += python_urls(config)
    return [("modulepreload", url) for url in modules] + [("preload", url) for url in fetches]


def missing_runtime_assets(config):
    """Files the configured runtime needs that are not installed (empty when all are there)."""
    folder, entry, _ = RUNTIME_ENTRY[config.runtime]
    needed = [config.root / VENDOR["pyscript"] / "core.js", config.root / VENDOR[folder] / entry]
    return [str(path.relative_to(config.root)) for path in needed if not path.is_file()]


# ---- the widget's own files ------------------------------------------------------------------------

def widget_modules(config):
    """The widget's Python modules, copied into the runtime's file system by PyScript."""
    return sorted(path.name for path in (config.root / "widget").glob("*.py") if path.name != "main.py")


def python_delivery():
    return "files" if os.environ.get("CHAT_WIDGET_PYTHON_DELIVERY", "").lower() == "files" else "bundle"


def widget_url(config, name):
    """/widget/<name>?v=<content hash>: cached for a year, changes when the file does."""
    info = file_info(config.root / "widget" / name)
    return f"/widget/{name}?v={info.version}" if info else f"/widget/{name}"


def python_urls(config):
    """What PyScript fetches for the widget's Python: the bundle, or main.py and each module."""
    if python_delivery() == "bundle":
        return [f"/widget/{BUNDLE_NAME}?v={_version(widget_bundle(config))}"]
    return [widget_url(config, "main.py")] + [widget_url(config, name) for name in widget_modules(config)]


def _without_bare_strings(tree):
    """The AST dump with every statement that is only a string (docstrings) emptied."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            node.value.value = ""
    return ast.dump(tree)


def strip_python(source):
    """The source without comments and docstrings, every line kept in place (so tracebacks keep their
    line numbers): about a third fewer bytes for the widget. Returns the source unchanged if it cannot
    prove (by comparing syntax trees) that nothing else changed."""
    try:
        tokens = [t for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type != tokenize.NL]
    except (tokenize.TokenError, SyntaxError):
        return source
    cuts, previous = [], tokenize.NEWLINE
    for index, token in enumerate(tokens):
        if token.type == tokenize.COMMENT:
            cuts.append((token.start, token.end, ""))
            continue
        following = tokens[index + 1].type if index + 1 < len(tokens) else tokenize.ENDMARKER
        if (token.type == tokenize.STRING and previous in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
                and following in (tokenize.NEWLINE, tokenize.COMMENT, tokenize.ENDMARKER)):
            cuts.append((token.start, token.end, '""'))  # a statement of its own: keeps a body non-empty
        previous = token.type
    lines = source.splitlines(keepends=True)
    for (start_row, start_col), (end_row, end_col), replacement in reversed(cuts):
        merged = (lines[start_row - 1][:start_col] + replacement).rstrip() + lines[end_row - 1][end_col:]
        if not merged.strip():
            merged = "\n"
        lines[start_row - 1:end_row] = [merged] + ["\n"] * (end_row - start_row)
    result = "".join(lines)
    try:
        if _without_bare_strings(ast.parse(source)) != _without_bare_strings(ast.parse(result)):
            return source
    except SyntaxError:
        return source
    return result


def widget_bundle(config):
    """main.py preceded by a few lines that write the widget modules into the runtime's file system.

    The modules land where the ``files`` config would put them (``./widget/<name>``), so imports and
    tracebacks inside them are unchanged; main.py's line n is the bundle's line n + its prelude length.
    """
    folder = config.root / "widget"
    sources = [(name, _stripped(folder / name)) for name in widget_modules(config)]
    main = _stripped(folder / "main.py")
    entries = ",\n".join(f"    ({name!r}, {text!r})" for name, text in sources)
    prelude = [
        "# The chat widget's Python in one request, generated by server/assets.py from widget/*.py.",
        "def _chat_widget_install(sources):",
        "    import os",
        "    try:",
        "        os.mkdir('widget')",
        "    except OSError:",
        "        pass",
        "    for name, text in sources:",
        "        with open('widget/' + name, 'w') as out:",
        "            out.write(text)",
        "    try:",
        "        import importlib",
        "        importlib.invalidate_caches()",
        "    except (ImportError, AttributeError):",
        "        pass",
        "_chat_widget_install((",
        entries + ",",
        "))",
        "del _chat_widget_install",
    ]
    first_line = len(prelude) + entries.count("\n") + 2
    prelude.append(f"# widget/main.py follows: its line 1 is line {first_line} of this file.")
    return ("\n".join(prelude) + "\n" + main).encode("utf-8")


def _stripped(path):
    return _cached("stripped", path, lambda p: strip_python(p.read_text(encoding="utf-8")))


def _version(data):
    return hashlib.sha256(data).hexdigest()[:12]


# ---- PyScript configuration and the page -----------------------------------------------------------

def pyscript_config(config):
    folder, entry, _ = RUNTIME_ENTRY[config.runtime]
    settings = {"interpreter": vendor_url(config, folder, entry)}
    if python_delivery() == "files":
        settings["files"] = {widget_url(config, name): f"./widget/{name}" for name in widget_modules(config)}
    plugins = excluded_plugins(config)
    if plugins:
        settings["plugins"] = plugins
    return settings


def widget_settings(config):
    """What the Python widget reads at start: where to connect and whom to offer when it cannot."""
    settings = {"socket_url": "/ws", "check_url": "/ws-check", "runtime": config.runtime,
                "contact": config.contact, "version": "0.1.0"}
    if config.socket_url:
        parts = urlsplit(config.socket_url)
        settings["socket_url"] = config.socket_url
        settings["check_url"] = urlunsplit(({"ws": "http", "wss": "https"}[parts.scheme], parts.netloc, "/ws-check", "", ""))
    return settings


def preload_links(config):
    lines = []
    for rel, url in preloads(config):
        if rel == "modulepreload":
            lines.append(f'<link rel="modulepreload" href="{escape(url)}">')
        else:  # crossorigin: PyScript and the runtimes fetch() in cors mode; without it the file loads twice
            lines.append(f'<link rel="preload" as="fetch" crossorigin href="{escape(url)}">')
    return Markup("\n".join(lines))


def other_type_config(config):
    """PyScript loads the plugins of both script types (py and mpy); this turns off the unused type's."""
    _, _, script_type = RUNTIME_ENTRY[config.runtime]
    plugins = excluded_plugins(config)
    if not plugins:
        return Markup("")
    other = OTHER_TYPE[script_type]
    return Markup(f"<{other}-config hidden>{escape(json.dumps({'plugins': plugins}))}</{other}-config>")


async def render_widget(config):
    template = (config.root / "widget" / "embed.html").read_text(encoding="utf-8")
    _, _, script_type = RUNTIME_ENTRY[config.runtime]
    main_src = python_urls(config)[0]
    return Markup(await render_template_string(
        template,
        script_type=script_type,
        pyscript_config=json.dumps(pyscript_config(config)),
        widget_settings=json.dumps(widget_settings(config)),
        loading_timeout=60 if config.runtime == "pyodide" else 20,
        preload_links=preload_links(config),
        other_type_config=other_type_config(config),
        core_js=vendor_url(config, "pyscript", "core.js"),
        stylesheet=widget_url(config, "widget.css"),
        boot_js=widget_url(config, "boot.js"),
        main_src=main_src,
    ))


# ---- compressed copies -----------------------------------------------------------------------------

class FileInfo:
    __slots__ = ("path", "size", "mtime", "digest")

    def __init__(self, path, size, mtime, digest):
        self.path, self.size, self.mtime, self.digest = path, size, mtime, digest

    @property
    def version(self):
        return self.digest[:12]

    def etag(self, encoding=None):
        return f'"{self.digest[:20]}{"-" + SUFFIX[encoding] if encoding else ""}"'


def _hash_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_info(path):
    """Size, mtime and sha256 of a file (remembered until it changes); None if it is not a file."""
    path = Path(path)
    if not path.is_file():
        return None

    def compute(p):
        stat = p.stat()
        return FileInfo(p, stat.st_size, stat.st_mtime, _hash_file(p))
    return _cached("info", path, compute)


def compress(data, encoding):
    if encoding == "br":
        return brotli.compress(data, quality=BROTLI_QUALITY)
    return gzip.compress(data, GZIP_LEVEL, mtime=0)


def available_encodings():
    return ("br", "gzip") if brotli is not None else ("gzip",)


class CompressedStore:
    """Compressed copies of files, on disk under their content hash, made by one background thread."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.pending = {}
        self.lock = threading.Lock()
        self.writable = True
        self.jobs = queue.SimpleQueue()
        self.worker = None

    def _run(self):
        # A daemon thread, not a ThreadPoolExecutor: the interpreter joins an executor's threads at exit,
        # so a 25 s brotli job (Pyodide's wasm) would hold up a graceful shutdown.
        while True:
            job, info, encoding = self.jobs.get()
            if not job.set_running_or_notify_cancel():
                continue
            try:
                job.set_result(self._make(info, encoding))
            except BaseException as error:  # noqa: BLE001 - handed to whoever waits
                job.set_exception(error)

    def path(self, digest, encoding):
        return self.directory / f"{digest}.{SUFFIX[encoding]}"

    def lookup(self, info, encoding):
        """The compressed copy's path; False if compressing does not pay for this file; None if not made yet."""
        path = self.path(info.digest, encoding)
        if path.is_file():
            return path
        if path.with_name(path.name + ".skip").exists():
            return False
        return None

    def schedule(self, info, encoding):
        """A Future of lookup()'s answer once the copy exists (one job per file and encoding)."""
        key = (info.digest, encoding)
        with self.lock:
            job = self.pending.get(key)
            if job is None:
                job = Future()
                self.pending[key] = job
                job.add_done_callback(lambda _, key=key: self._done(key))
                if self.worker is None or not self.worker.is_alive():
                    self.worker = threading.Thread(target=self._run, name="chat-widget-compress", daemon=True)
                    self.worker.start()
                self.jobs.put((job, info, encoding))
            return job

    def _done(self, key):
        with self.lock:
            self.pending.pop(key, None)

    def _make(self, info, encoding):
        done = self.lookup(info, encoding)
        if done is not None:
            return done
        target = self.path(info.digest, encoding)
        lock = target.with_name(target.name + ".lock")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if not self._take(lock):
                return None  # another server process is making it
        except OSError as error:
            if self.writable:
                log.warning("cannot write compressed assets to %s (%s): serving them uncompressed", self.directory, error)
            self.writable = False
            return None
        try:
            data = info.path.read_bytes()
            if hashlib.sha256(data).hexdigest() != info.digest:
                return None  # changed meanwhile; the next request sees the new file
            started = time.monotonic()
            packed = compress(data, encoding)
            if len(packed) >= len(data) * 0.95:
                target.with_name(target.name + ".skip").touch()
                return False
            temporary = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            temporary.write_bytes(packed)
            os.replace(temporary, target)
            log.debug("compressed %s %s: %d -> %d bytes in %.2f s", info.path.name, encoding, len(data),
                      len(packed), time.monotonic() - started)
            return target
        except OSError as error:
            log.warning("compressing %s failed: %s", info.path, error)
            return None
        finally:
            try:
                lock.unlink()
            except OSError:
                pass

    @staticmethod
    def _take(lock):
        """Create the lock file holding our pid; False while another live process holds it."""
        for _ in range(2):
            try:
                descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    owner = int(lock.read_text() or 0)
                    fresh = time.time() - lock.stat().st_mtime < LOCK_STALE
                except (OSError, ValueError):
                    owner, fresh = 0, False
                if owner and owner != os.getpid() and fresh and _alive(owner):
                    return False
                try:
                    lock.unlink()
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(descriptor, "w") as stream:
                stream.write(str(os.getpid()))
            return True
        return False

    def warm(self, paths):
        """Queue compressed copies of these files (smallest first), without waiting."""
        infos = [file_info(path) for path in paths]
        infos = sorted((i for i in infos if i and i.path.suffix in COMPRESSIBLE), key=lambda i: i.size)
        for encoding in reversed(available_encodings()):  # gzip (fast) for all, then brotli
            for info in infos:
                if self.lookup(info, encoding) is None:
                    self.schedule(info, encoding)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_stores = {}
_stores_lock = threading.Lock()


def compressed_store(config):
    directory = Path(os.environ.get("CHAT_WIDGET_ASSET_CACHE") or config.root / "var" / "compressed")
    with _stores_lock:
        store = _stores.get(directory)
        if store is None:
            store = _stores[directory] = CompressedStore(directory)
        return store


class _Bodies:
    """File bodies kept in memory (least recently used dropped past MEMORY_LIMIT bytes)."""

    def __init__(self):
        self.items = collections.OrderedDict()
        self.size = 0

    def get(self, key):
        data = self.items.get(key)
        if data is not None:
            self.items.move_to_end(key)
        return data

    def put(self, key, data):
        if key in self.items or len(data) > MEMORY_FILE_LIMIT:
            return
        self.items[key] = data
        self.size += len(data)
        while self.size > MEMORY_LIMIT and self.items:
            _, dropped = self.items.popitem(last=False)
            self.size -= len(dropped)


_bodies = _Bodies()
_generated = collections.OrderedDict()  # sha256 of generated bytes -> {encoding: bytes}
_generated_lock = threading.Lock()


def runtime_files(config, runtime=None):
    """Every file the page of this runtime loads from our server (for warming the compressed copies)."""
    runtime = runtime or config.runtime
    folder = RUNTIME_ENTRY[runtime][0]
    manifest = pyscript_manifest(config)
    files = [config.root / VENDOR["pyscript"] / name for name in manifest["chunks"]]
    files += [config.root / VENDOR["pyscript"] / name for name in manifest["plugins"].values() if name]
    files += [config.root / VENDOR[folder] / name for name in RUNTIME_MODULES[runtime] + RUNTIME_FETCHES[runtime]]
    files += [config.root / "widget" / name for name in ("widget.css", "boot.js", "main.py", *widget_modules(config))]
    return [path for path in files if path.is_file()]


@bp.before_app_serving
async def warm_compressed_copies():
    """At start, without waiting: compressed copies of the runtime's files and of the Python bundle."""
    config = current_app.extensions["chat_config"]
    compressed_store(config).warm(runtime_files(config))
    try:
        page = (await render_page(config)).encode("utf-8")
    except Exception:  # noqa: BLE001 - the first request will report it
        log.exception("rendering the page at start failed")
        page = None
    threading.Thread(target=_warm_generated, args=(config, page), name="chat-widget-warm", daemon=True).start()


def _warm_generated(config, page):
    """Compress the page and the Python bundle once, before the first visitor asks."""
    try:
        if page is not None:
            generated_variants(page)
        if python_delivery() == "bundle":
            generated_variants(widget_bundle(config))
    except Exception:  # noqa: BLE001 - the first request will report it
        log.exception("preparing the page or the widget's Python bundle failed")


# ---- HTTP ------------------------------------------------------------------------------------------

def accepted_encodings():
    """Content codings the request accepts (q > 0)."""
    accepted = set()
    for part in request.headers.get("Accept-Encoding", "").split(","):
        token, _, params = part.strip().partition(";")
        token = token.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if token and quality > 0:
            accepted.add(token)
    if "*" in accepted:
        accepted.update(("br", "gzip"))
    if "x-gzip" in accepted:
        accepted.add("gzip")
    return accepted


def _content_type(name):
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/json", "application/javascript"):
        kind += "; charset=utf-8"
    return kind


def _etag_match(etags):
    """The ETag among ``etags`` that If-None-Match names (or "*"), else None."""
    header = request.headers.get("If-None-Match")
    if not header:
        return None
    names = {tag.strip().removeprefix("W/") for tag in header.split(",")}
    if "*" in names:
        return etags[0]
    for etag in etags:
        if etag in names:
            return etag
    return None


def _not_modified_since(mtime):
    header = request.headers.get("If-Modified-Since")
    if not header or request.headers.get("If-None-Match"):
        return False
    try:
        return int(mtime) <= parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return False


def _response(body, content_type, cache_control, etag, encoding=None, last_modified=None, compressible=True,
              length=None):
    response = Response(body, status=200, content_type=content_type)
    if length is not None:
        response.content_length = length
    response.headers["Cache-Control"] = cache_control
    response.headers["ETag"] = etag
    if last_modified is not None and cache_control != IMMUTABLE:  # the ETag is validator enough there
        response.headers["Last-Modified"] = formatdate(last_modified, usegmt=True)
    if encoding:
        response.headers["Content-Encoding"] = encoding
    if compressible:
        response.vary.add("Accept-Encoding")
    return response


def _not_modified(etag, cache_control, last_modified=None, compressible=True):
    response = Response(b"", status=304)
    response.headers["Cache-Control"] = cache_control
    response.headers["ETag"] = etag
    if last_modified is not None:
        response.headers["Last-Modified"] = formatdate(last_modified, usegmt=True)
    if compressible:
        response.vary.add("Accept-Encoding")
    return response


async def serve_file(config, path, cache_control):
    """One file with content negotiation (br, gzip, identity), validators and 304s."""
    info = file_info(path)
    if info is None:
        abort(404)
    compressible = path.suffix.lower() in COMPRESSIBLE
    encodings = [e for e in available_encodings() if e in accepted_encodings()] if compressible else []
    etags = [info.etag()] + [info.etag(e) for e in available_encodings()] if compressible else [info.etag()]
    matched = _etag_match(etags)
    if matched or _not_modified_since(info.mtime):
        return _not_modified(matched or info.etag(), cache_control, info.mtime, compressible)
    store = compressed_store(config)
    chosen, source = None, path
    for encoding in encodings:
        found = store.lookup(info, encoding)
        if found is None and store.writable:
            job = store.schedule(info, encoding)
            if info.size <= SMALL:
                found = await asyncio.wrap_future(job)
        if found:
            chosen, source = encoding, found
            break
    key = (info.digest, chosen)
    body = _bodies.get(key)
    length = None
    if body is None:
        size = source.stat().st_size
        if size <= MEMORY_FILE_LIMIT:
            body = await asyncio.to_thread(source.read_bytes)
            _bodies.put(key, body)
        else:
            body, length = current_app.response_class.file_body_class(source, buffer_size=1 << 20), size
    return _response(body, _content_type(path.name), cache_control, info.etag(chosen), chosen, info.mtime,
                     compressible, length)


def generated_variants(data):
    """(digest, {encoding: bytes}) for bytes made by the server, compressed once per content."""
    digest = hashlib.sha256(data).hexdigest()
    with _generated_lock:
        variants = _generated.get(digest)
    if variants is None:
        variants = {}
        for encoding in available_encodings():
            packed = compress(data, encoding)
            if len(packed) < len(data):
                variants[encoding] = packed
        with _generated_lock:
            _generated[digest] = variants
            while len(_generated) > 64:
                _generated.popitem(last=False)
    return digest, variants


async def serve_generated(data, content_type, cache_control):
    """Bytes made by the server (the page, the Python bundle): compressed once per content, ETag, 304."""
    digest = hashlib.sha256(data).hexdigest()
    etag = f'"{digest[:20]}"'
    etags = [etag] + [f'"{digest[:20]}-{SUFFIX[e]}"' for e in available_encodings()]
    matched = _etag_match(etags)
    if matched:
        return _not_modified(matched, cache_control)
    _, variants = await asyncio.to_thread(generated_variants, data)
    accepted = accepted_encodings()
    for encoding in available_encodings():
        if encoding in variants and encoding in accepted:
            return _response(variants[encoding], content_type, cache_control, f'"{digest[:20]}-{SUFFIX[encoding]}"',
                             encoding)
    return _response(data, content_type, cache_control, etag)


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


async def render_page(config):
    page = (config.root / "index.html").read_text(encoding="utf-8")
    return await render_template_string(page, chat_widget=await render_widget(config))


@bp.route("/")
async def index():
    config = current_app.extensions["chat_config"]
    html = await render_page(config)
    return await serve_generated(html.encode("utf-8"), "text/html; charset=utf-8", REVALIDATE)


@bp.route("/widget/<name>")
async def widget_file(name):
    config = current_app.extensions["chat_config"]
    if name == BUNDLE_NAME:
        data = widget_bundle(config)
        immutable = request.args.get("v") == _version(data)
        return await serve_generated(data, _content_type(name), IMMUTABLE if immutable else REVALIDATE)
    if not name.endswith(WIDGET_SUFFIXES):
        abort(404)
    path = _inside(config.root / "widget", name)
    if path is None:
        abort(404)
    info = file_info(path)
    immutable = info is not None and request.args.get("v") == info.version
    return await serve_file(config, path, IMMUTABLE if immutable else REVALIDATE)


@bp.route("/vendor/<package>/<path:filename>")
async def vendor_file(package, filename):
    """/vendor/<package>@<version>/<file> (immutable) or /vendor/<package>/<file> (revalidated)."""
    name, at, version = package.partition("@")
    folder = VENDOR.get(name)
    if folder is None:
        abort(404)
    config = current_app.extensions["chat_config"]
    if at and version != package_version(config, name):
        abort(404)  # another release's file: never cache this one under that URL
    path = _inside(config.root / folder, filename)
    if path is None:
        abort(404)
    return await serve_file(config, path, IMMUTABLE if at else REVALIDATE)


@bp.route("/favicon.ico")
async def favicon():
    return "", 204
