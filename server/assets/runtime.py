"""The browser runtimes, read from the installed npm packages (``npm ci``, pinned in package-lock.json).

Versions come from each package.json, PyScript's hashed chunk names and plugin registry from its
core.js, so nothing here changes by hand when a package is upgraded. Runtime files are served at
``/vendor/<package>@<version>/<file>``, immutable; the preloads name every file PyScript will ask for,
so they download in parallel instead of in a chain of round trips.
"""

import json
import re

from . import snapshot as pyodide_snapshot

# URL prefix -> folder below the project root.
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
# runtime -> (vendor prefix, entry module, PyScript script type)
RUNTIME_ENTRY = {
    "micropython": ("micropython", "micropython.mjs", "mpy"),
    "pyodide": ("pyodide", "pyodide.mjs", "py"),
}
# What each runtime loads besides its entry module: JavaScript modules (import()) and fetched files.
RUNTIME_MODULES = {"micropython": ("micropython.mjs",), "pyodide": ("pyodide.mjs", "pyodide.asm.mjs")}
RUNTIME_FETCHES = {"micropython": ("micropython.wasm",),
                   "pyodide": ("pyodide.asm.wasm", "python_stdlib.zip", "pyodide-lock.json")}

_STATIC_IMPORT = re.compile(r"""(?:\bfrom|\bimport)\s*["']\./([\w.\-]+\.m?js)["']""")
_PLUGIN_ENTRY = re.compile(r"""["']?([a-z][\w-]*)["']?:\(\)=>(?:import\(["']\./([\w.\-]+\.m?js)["']\)|Promise\.resolve\(\)(?:\.then\(function\(\)\{return \w+\}\))?)""")
_NO_MANIFEST = {"chunks": [], "plugins": {}}


def missing_runtime_assets(config):
    """Files the configured runtime needs that are not installed (empty when all are there)."""
    folder, entry, _ = RUNTIME_ENTRY[config.runtime]
    needed = [config.root / VENDOR["pyscript"] / "core.js", config.root / VENDOR[folder] / entry]
    return [str(path.relative_to(config.root)) for path in needed if not path.is_file()]


def _read_text(path):
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def read_manifest(core_js):
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
    for name in chunks:
        plugins = _plugin_registry(_read_text(folder / name))
        if plugins:
            return {"chunks": chunks, "plugins": plugins}
    return {"chunks": chunks, "plugins": {}}


def _plugin_registry(text):
    """The registry is one object literal: the run of adjacent entries that contains "error"."""
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
            return {m.group(1): m.group(2) for m in run}
    return {}


def _read_version(path):
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return None


class Runtime:
    """The installed PyScript and the configured runtime: versions, URLs, preloads, files."""

    def __init__(self, config, files):
        self.config = config
        self.files = files  # FileMemo: package.json and core.js are read again only when they change
        self.snapshots = None  # snapshot.Snapshots, for the pyodide_snapshot experiment

    def package_version(self, package):
        """The installed npm version of a vendor package (None if it is not installed)."""
        return self.files.get("version", self.config.root / PACKAGE_JSON[package], _read_version)

    def vendor_url(self, package, filename):
        """The versioned, immutable URL of a runtime file: /vendor/<package>@<version>/<file>."""
        version = self.package_version(package)
        return f"/vendor/{package}@{version}/{filename}" if version else f"/vendor/{package}/{filename}"

    def manifest(self):
        """``read_manifest`` of the installed core.js (empty when PyScript is not installed)."""
        core_js = self.config.root / VENDOR["pyscript"] / "core.js"
        return self.files.get("manifest", core_js, read_manifest) or _NO_MANIFEST

    def interpreter_url(self):
        snapshot = self.snapshot()
        if snapshot is not None:
            return self.snapshot_url(snapshot, pyodide_snapshot.WRAPPER)
        folder, entry, _ = RUNTIME_ENTRY[self.config.runtime]
        return self.vendor_url(folder, entry)

    def snapshot(self):
        """The Pyodide memory snapshot's ``FileInfo`` when the pyodide_snapshot experiment is on and the
        snapshot is ready (made in the background until then), else None."""
        if self.config.runtime != "pyodide" or not self.config.pyodide_snapshot or self.snapshots is None:
            return None
        return self.snapshots.ready()

    def snapshot_url(self, info, filename):
        """/vendor/pyodide-snapshot@<snapshot's content version>/<file>: immutable, like the package's files."""
        return f"/vendor/{pyodide_snapshot.PACKAGE}@{info.version}/{filename}"

    def snapshot_wrapper(self, info):
        """The interpreter module of the snapshot experiment (``snapshot.wrapper_module``)."""
        pyodide_url = self.vendor_url("pyodide", "pyodide.mjs")
        return pyodide_snapshot.wrapper_module(pyodide_url, pyodide_url.rsplit("/", 1)[0] + "/",
                                               self.snapshot_url(info, pyodide_snapshot.SNAPSHOT))

    def script_type(self):
        """The PyScript script type of the configured runtime: "mpy" or "py"."""
        return RUNTIME_ENTRY[self.config.runtime][2]

    def excluded_plugins(self):
        """``"!name"`` for every PyScript plugin: the widget uses none (not even ``error``, which would
        print Python errors into the host page; boot.js shows a failure instead)."""
        return [f"!{name}" for name in self.manifest()["plugins"]]

    def preloads(self, python_urls):
        """[(rel, url)] for everything PyScript will request, in the order it needs them.

        ``python_urls``: what PyScript fetches for the widget's Python (``WidgetPython.urls()``).
        """
        config = self.config
        manifest = self.manifest()
        folder = RUNTIME_ENTRY[config.runtime][0]
        modules = [self.vendor_url("pyscript", name) for name in manifest["chunks"]]
        # The error plugin's chunk is imported even when the plugin is excluded (to turn it off).
        error_chunk = manifest["plugins"].get("error")
        if error_chunk:
            modules.append(self.vendor_url("pyscript", error_chunk))
        modules += [self.vendor_url(folder, name) for name in RUNTIME_MODULES[config.runtime]]
        fetches = [self.vendor_url(folder, name) for name in RUNTIME_FETCHES[config.runtime]
                   if (config.root / VENDOR[folder] / name).is_file()]
        snapshot = self.snapshot()
        if snapshot is not None:  # the interpreter module is ours, importing Pyodide's
            modules.insert(len(modules) - len(RUNTIME_MODULES[config.runtime]),
                           self.snapshot_url(snapshot, pyodide_snapshot.WRAPPER))
            fetches.insert(0, self.snapshot_url(snapshot, pyodide_snapshot.SNAPSHOT))
        if config.runtime == "micropython":
            # Pyodide needs seconds of CPU before it asks for the Python: preloading it then only earns
            # Chromium's "preloaded but not used within a few seconds" console warning.
            fetches += python_urls
        return [("modulepreload", url) for url in modules] + [("preload", url) for url in fetches]

    def runtime_files(self, runtime=None):
        """Every installed PyScript and runtime file the page of ``runtime`` (default: the configured one) loads."""
        runtime = runtime or self.config.runtime
        root = self.config.root
        folder = RUNTIME_ENTRY[runtime][0]
        manifest = self.manifest()
        files = [root / VENDOR["pyscript"] / name for name in manifest["chunks"]]
        files += [root / VENDOR["pyscript"] / name for name in manifest["plugins"].values() if name]
        files += [root / VENDOR[folder] / name for name in RUNTIME_MODULES[runtime] + RUNTIME_FETCHES[runtime]]
        return [path for path in files if path.is_file()]
