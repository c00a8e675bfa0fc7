"""Compressed copies of files (brotli quality 11 and gzip), made once and kept on disk.

Copies live in ``Config.asset_cache`` as ``<sha256 of the original>.br|.gz``, so a changed file never
gets an old copy. They are made by two threads per store: one for the copies a request waits for (a
small file, see ``http.SMALL``), and one at a lower CPU priority for the rest (``warm`` at start:
Pyodide's take about 30 s), so a first visitor never waits behind the warming; or ahead of time by
``scripts/compress-assets``. brotli and zlib release the GIL while they compress, so the threads do not
hold up the event loop (bench/startup.py measures it). A lock file holding the maker's pid keeps two
server processes from compressing the same file; a ``.skip`` file records that compressing does not
pay (less than 5 % smaller; python_stdlib.zip).
"""

import gzip
import hashlib
import logging
import os
import queue
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

try:
    import brotli
except ImportError:  # gzip only (add `brotli` to the dependencies)
    brotli = None

log = logging.getLogger("chat_widget.assets")

COMPRESSIBLE = {".js", ".mjs", ".wasm", ".css", ".py", ".json", ".map", ".html", ".txt", ".ts", ".svg",
                ".snapshot"}  # Pyodide's memory snapshot (snapshot.py): 31 MB, 4.4 MB brotli
SUFFIX = {"br": "br", "gzip": "gz"}  # Content-Encoding -> file suffix (and ETag suffix)
LOCK_STALE = 300  # seconds after which another process's compression lock is ignored
BROTLI_QUALITY = 11
GZIP_LEVEL = 9
# Requests wait for the copy of files up to this size (http.SMALL); a larger one is sent as it is meanwhile,
# so its job is never urgent: on the urgent thread it would hold up the small ones for seconds.
URGENT_SIZE = 256 * 1024
BACKGROUND_NICE = 10  # the warming thread's niceness: on a busy machine the event loop's thread comes first


def available_encodings():
    """The content codings we can make, preferred first."""
    return ("br", "gzip") if brotli is not None else ("gzip",)


def compress(data, encoding, brotli_quality=BROTLI_QUALITY):
    if encoding == "br":
        return brotli.compress(data, quality=brotli_quality)
    return gzip.compress(data, GZIP_LEVEL, mtime=0)


class CompressedStore:
    """Compressed copies of files, on disk under their content hash, made by background threads."""

    def __init__(self, directory, brotli_quality=BROTLI_QUALITY):
        self.directory = Path(directory)
        self.brotli_quality = brotli_quality
        self.pending = {}  # (digest, encoding) -> Future
        self.lock = threading.Lock()
        self.writable = True
        self.queues = {True: queue.SimpleQueue(), False: queue.SimpleQueue()}  # urgent? -> jobs
        self.workers = {}

    def _run(self, urgent):
        # Daemon threads, not a ThreadPoolExecutor: the interpreter joins an executor's threads at exit,
        # so a 25 s brotli job (Pyodide's wasm) would hold up a graceful shutdown.
        if not urgent:
            _lower_priority_of_this_thread()
        jobs = self.queues[urgent]
        while True:
            job, info, encoding = jobs.get()
            with self.lock:  # a job may sit in both queues: the first worker to get it makes it
                if job.running() or job.done() or not job.set_running_or_notify_cancel():
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

    def schedule(self, info, encoding, urgent=None):
        """A Future of lookup()'s answer once the copy exists (one job per file and encoding).

        ``urgent`` (default: for files up to URGENT_SIZE): a request waits for it, so it does not queue
        behind the warming at start (a job already queued there is queued here too; whichever thread
        takes it first makes it).
        """
        urgent = info.size <= URGENT_SIZE if urgent is None else urgent
        key = (info.digest, encoding)
        with self.lock:
            job = self.pending.get(key)
            if job is None:
                job = Future()
                self.pending[key] = job
                job.add_done_callback(lambda _, key=key: self._done(key))
            elif not urgent or job.running():
                return job
            worker = self.workers.get(urgent)
            if worker is None or not worker.is_alive():
                name = "chat-widget-compress" + ("" if urgent else "-warm")
                worker = self.workers[urgent] = threading.Thread(target=self._run, args=(urgent,), name=name,
                                                                 daemon=True)
                worker.start()
            self.queues[urgent].put((job, info, encoding))
            return job

    def warm(self, infos):
        """Queue compressed copies of these files (``FileInfo``s; smallest first), without waiting."""
        infos = sorted((i for i in infos if i and i.path.suffix in COMPRESSIBLE), key=lambda i: i.size)
        for encoding in reversed(available_encodings()):  # gzip (fast) for all, then brotli
            for info in infos:
                if self.lookup(info, encoding) is None:
                    self.schedule(info, encoding, urgent=False)

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


def _lower_priority_of_this_thread():
    """Nice the calling thread only. Linux keeps a niceness per thread (setpriority(2), NOTES); elsewhere
    the same call would nice the whole process, so it is left alone there."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
        except OSError:
            pass


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
