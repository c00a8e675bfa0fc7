"""Compressed copies of files (brotli quality 11 and gzip), made once and kept on disk.

Copies live in ``Config.asset_cache`` as ``<sha256 of the original>.br|.gz``, so a changed file never
gets an old copy. They are made by one background thread per store (the request may wait for a small
file, see ``http.SMALL``), or ahead of time by ``scripts/compress-assets``. A lock file holding the
maker's pid keeps two server processes from compressing the same file; a ``.skip`` file records that
compressing does not pay (less than 5 % smaller; python_stdlib.zip).
"""

import gzip
import hashlib
import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from pathlib import Path

try:
    import brotli
except ImportError:  # gzip only (add `brotli` to the dependencies)
    brotli = None

log = logging.getLogger("chat_widget.assets")

COMPRESSIBLE = {".js", ".mjs", ".wasm", ".css", ".py", ".json", ".map", ".html", ".txt", ".ts", ".svg"}
SUFFIX = {"br": "br", "gzip": "gz"}  # Content-Encoding -> file suffix (and ETag suffix)
LOCK_STALE = 300  # seconds after which another process's compression lock is ignored
BROTLI_QUALITY = 11
GZIP_LEVEL = 9


def available_encodings():
    """The content codings we can make, preferred first."""
    return ("br", "gzip") if brotli is not None else ("gzip",)


def compress(data, encoding, brotli_quality=BROTLI_QUALITY):
    if encoding == "br":
        return brotli.compress(data, quality=brotli_quality)
    return gzip.compress(data, GZIP_LEVEL, mtime=0)


class CompressedStore:
    """Compressed copies of files, on disk under their content hash, made by one background thread."""

    def __init__(self, directory, brotli_quality=BROTLI_QUALITY):
        self.directory = Path(directory)
        self.brotli_quality = brotli_quality
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

    def warm(self, infos):
        """Queue compressed copies of these files (``FileInfo``s; smallest first), without waiting."""
        infos = sorted((i for i in infos if i and i.path.suffix in COMPRESSIBLE), key=lambda i: i.size)
        for encoding in reversed(available_encodings()):  # gzip (fast) for all, then brotli
            for info in infos:
                if self.lookup(info, encoding) is None:
                    self.schedule(info, encoding)

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
            if not _take(lock):
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
            packed = compress(data, encoding, self.brotli_quality)
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


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
