"""Pyodide started from a memory snapshot (experiment, ``pyodide_snapshot`` setting, off by default).

Pyodide spends about 2 s of CPU starting CPython (docs/performance.md). ``loadPyodide`` can instead
restore a copy of the wasm memory taken right after that start (``_makeSnapshot`` then
``makeMemorySnapshot()``; restored with ``_loadSnapshot``): 0.16 s instead of 2 s in node here. The
snapshot is made from the pinned npm package by node (``scripts/pyodide-snapshot``, or by the server
in the background at start) and never committed; it is 31.5 MB of memory, 4.23 MB brotli (quality 11;
50-220 s of CPU once per Pyodide release), 6.37 MB gzip, sent on top of the usual 5.6 MB.

PyScript 0.7 passes no options of its own to ``loadPyodide``, so its ``interpreter`` setting names a
small module of ours (``wrapper_module``) that re-exports Pyodide's and adds the snapshot. The frame
uses it only once the snapshot and its compressed copies exist; until then it is plain Pyodide.
"""

import hashlib
import json
import logging
import shutil
import subprocess
import threading
from pathlib import Path

log = logging.getLogger("chat_widget.assets")

PACKAGE = "pyodide-snapshot"  # /vendor/pyodide-snapshot@<key>/<file>
WRAPPER = "pyodide.mjs"
SNAPSHOT = "snapshot.bin"
# The snapshot belongs to these files: a different wasm, JS glue or standard library needs a new one.
SOURCES = ("pyodide.asm.wasm", "pyodide.asm.mjs", "python_stdlib.zip")

# The standard library PyScript's own package and the widget import as they start: imported before the
# snapshot is taken, they cost nothing at each start (about 0.7 s of imports in node) and no bytes (4.25 MB
# brotli without them, 4.23 MB with).
# Only pure modules: one holding a JavaScript object (js, pyodide.ffi) cannot be in a snapshot.
PREIMPORTS = "asyncio, base64, collections, functools, html, inspect, io, json, os, pathlib, re, time"

# Run by node with the Pyodide folder and the target file.
MAKE_SNAPSHOT_JS = """
import { writeFileSync, renameSync } from "node:fs";
import { pathToFileURL } from "node:url";
const [folder, target] = process.argv.slice(-2);
const { loadPyodide } = await import(pathToFileURL(folder + "/pyodide.mjs").href);
const pyodide = await loadPyodide({ indexURL: folder + "/", _makeSnapshot: true });
pyodide.runPython("import %s");
const temporary = `${target}.${process.pid}.tmp`;  // workers of one server may make it at the same time
writeFileSync(temporary, pyodide.makeMemorySnapshot());
renameSync(temporary, target);
""" % PREIMPORTS


def wrapper_module(pyodide_url, index_url, snapshot_url):
    """The module PyScript loads as its interpreter: Pyodide's own, restoring the snapshot.

    The snapshot's download starts when the module is evaluated, beside the wasm's. If it cannot be
    had, Pyodide starts the usual way (slower, but the widget works). ``random`` is seeded again: its
    state is in the snapshot (Pyodide imports it as it starts), so every visitor would draw the same
    numbers, and the reconnect backoff's jitter would send them all back at the same moments.
    """
    return f"""// Pyodide restored from a memory snapshot (server/assets/snapshot.py).
import {{ loadPyodide as load, version }} from {json.dumps(pyodide_url)};
export {{ version }};
let failed = false;
const snapshot = fetch({json.dumps(snapshot_url)}).then((response) => {{
  if (!response.ok) throw new Error(`snapshot: HTTP ${{response.status}}`);
  return response.arrayBuffer();
}}).catch((error) => {{ failed = true; throw error; }});
snapshot.catch(() => {{}});
export function loadPyodide(options) {{
  const settings = {{ ...options, indexURL: {json.dumps(index_url)} }};
  return load({{ ...settings, _loadSnapshot: snapshot }}).then((pyodide) => {{
    pyodide.runPython("__import__('random').seed()");
    return pyodide;
  }}, (error) => {{
    if (!failed) throw error;
    console.warn("Pyodide snapshot not used:", error);
    return load(settings);
  }});
}}
"""


class Snapshots:
    """The snapshot file of the installed Pyodide: where it is, whether it is ready, making it."""

    def __init__(self, config, files, store):
        self.config = config
        self.files = files  # FileMemo
        self.store = store  # CompressedStore: the snapshot is only used once its copies exist
        self.folder = config.root / "node_modules" / "pyodide"
        self.making = None  # the thread making it, at most one per app
        self.failed = False  # making it failed once (no node, node failed): plain Pyodide from then on

    def path(self):
        """Where the snapshot of the installed Pyodide is (or will be); None if Pyodide is not installed."""
        digests = []
        for name in SOURCES:
            info = self.files.info(self.folder / name)
            if info is None:
                return None
            digests.append(info.digest)
        key = hashlib.sha256(" ".join([*digests, PREIMPORTS]).encode()).hexdigest()[:16]
        return Path(self.config.asset_cache) / f"pyodide-{key}.snapshot"

    def ready(self):
        """The snapshot's ``FileInfo`` once it and every compressed copy exist, else None (and the
        making is started in the background)."""
        path = self.path()
        if path is None:
            return None
        info = self.files.info(path)
        if info is not None and all(self.store.lookup(info, encoding) for encoding in self.encodings()):
            return info
        self.start_making(path)
        return None

    def encodings(self):
        from .compression import available_encodings

        return available_encodings()

    def start_making(self, path):
        if self.failed or (self.making is not None and self.making.is_alive()):
            return
        self.making = threading.Thread(target=self.make, args=(path,), name="chat-widget-snapshot", daemon=True)
        self.making.start()

    def make(self, path=None):
        """Make the snapshot (node) and its compressed copies; the path, or None if it failed. A failure
        is final for this process (logged once): every page render asks ``ready``, and each try costs
        node's seconds and minutes of brotli."""
        path = path or self.path()
        if path is None:
            return None
        try:
            return self._make(path)
        except BaseException as error:  # a timeout, a full disk, a killed node: plain Pyodide from now on
            log.warning("pyodide_snapshot: making the snapshot failed (%s), so Pyodide starts without one", error)
            self.failed = True
            for stale in path.parent.glob(path.name + ".*.tmp"):
                stale.unlink(missing_ok=True)
            if not isinstance(error, Exception):
                raise
            return None

    def _make(self, path):
        if not path.is_file():
            node = shutil.which("node")
            if node is None:
                log.warning("pyodide_snapshot: node is not installed, so Pyodide starts without a snapshot")
                self.failed = True
                return None
            path.parent.mkdir(parents=True, exist_ok=True)
            done = subprocess.run([node, "--input-type=module", "-e", MAKE_SNAPSHOT_JS, "--", str(self.folder),
                                   str(path)], capture_output=True, text=True, timeout=300)
            if done.returncode != 0 or not path.is_file():
                log.warning("pyodide_snapshot: making the snapshot failed: %s", done.stderr.strip()[-500:])
                self.failed = True
                return None
        info = self.files.info(path)
        for encoding in self.encodings():
            if self.store.lookup(info, encoding) is None:
                self.store.schedule(info, encoding, urgent=False).result()
                if self.store.lookup(info, encoding) is None:
                    raise OSError(f"its {encoding} copy could not be written")
        return path
