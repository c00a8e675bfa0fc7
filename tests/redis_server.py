"""A real redis-server on a loopback port, with its own data folder, for the tests of the shared store.

Configured as a deployment should be (deploy/redis.conf): the append-only file on (``appendfsync
everysec``), no RDB snapshots, ``maxmemory-policy noeviction``. ``stop()`` is a clean shutdown and
``kill()`` a crash (SIGKILL); either way the data folder stays, and ``restart()`` starts Redis again on
the same port from it, so what was acknowledged comes back from the AOF. Leaving the ``with`` block
stops it and removes the folder; a process still running when the interpreter exits is killed::

    with RedisServer() as redis:          # sync tests, or `async with RedisServer() as redis`
        store = RedisStore(redis.url(0))
        redis.kill(); redis.restart()
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENSURE_REDIS = ROOT / "scripts" / "ensure-redis"
_RUNNING = set()  # processes to kill if the interpreter exits with them still running


class RedisUnavailable(RuntimeError):
    """No redis-server binary, and scripts/ensure-redis could not install one."""


def redis_binary(install=True):
    """The redis-server binary's path; runs scripts/ensure-redis when there is none (``install``), else raises."""
    for candidate in (shutil.which("redis-server"), "/usr/bin/redis-server", "/usr/local/bin/redis-server"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if install:
        result = subprocess.run([str(ENSURE_REDIS)], capture_output=True, text=True, timeout=300)
        if result.returncode == 0:
            return redis_binary(install=False)
        raise RedisUnavailable(f"redis-server is missing and scripts/ensure-redis failed: {result.stderr.strip()}")
    raise RedisUnavailable("redis-server is missing (scripts/ensure-redis installs it)")


def require_redis():
    """In a test or fixture: skip, saying why, when redis-server is absent and cannot be installed."""
    import pytest

    try:
        return redis_binary()
    except RedisUnavailable as error:
        pytest.skip(str(error))


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _encode(*words):
    parts = [f"*{len(words)}\r\n".encode()]
    for word in words:
        data = str(word).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


@atexit.register
def _kill_leftovers():
    for process in list(_RUNNING):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class RedisServer:
    """redis-server on ``127.0.0.1:port`` (0 picks a free one), its data in a temporary folder."""

    def __init__(self, port=0):
        self.port = port
        self.process = None
        self.dir = None
        self.started_in = None  # seconds from spawn to the first PONG

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self, timeout=10):
        binary = redis_binary()
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="chat-redis-"))
        wanted = self.port
        for _ in range(3):  # a free port picked here can be taken before Redis binds it: pick again
            self.port = wanted or _free_port()
            if self._spawn(binary, timeout):
                return self
            log = self.log()
            self._halt(signal.SIGKILL)
            if wanted or "Address already in use" not in log:
                break
        self.close()
        raise RuntimeError(f"redis-server did not start on 127.0.0.1:{self.port}:\n{log}")

    def _spawn(self, binary, timeout):
        (self.dir / "redis.log").unlink(missing_ok=True)
        started = time.monotonic()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--maxmemory-policy", "noeviction",
             "--daemonize", "no", "--logfile", str(self.dir / "redis.log"), "--loglevel", "notice"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _RUNNING.add(self.process)
        if self._wait_until_answering(timeout):
            self.started_in = time.monotonic() - started
            return True
        return False

    def _wait_until_answering(self, timeout):
        """Until PING answers PONG (not LOADING: a restart reads its AOF first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if self.command("PING") == "+PONG":
                    return True
            except OSError:
                pass
            time.sleep(0.01)
        return False

    def _halt(self, sig):
        """Signal the process and reap it; SIGTERM makes Redis write its AOF and exit."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
            except ProcessLookupError:
                pass
        _RUNNING.discard(self.process)
        self.process = None

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None

    def stop(self):
        """A clean shutdown (SIGTERM); the data stays for ``restart()``."""
        self._halt(signal.SIGTERM)

    def kill(self):
        """A crash (SIGKILL); what Redis acknowledged is in its AOF, which ``restart()`` reads."""
        self._halt(signal.SIGKILL)

    def restart(self, timeout=10):
        """Start again (after stopping it if it runs) on the same port from the same data; returns once
        it answers."""
        self.stop()
        if not self._spawn(redis_binary(), timeout):
            log = self.log()
            self._halt(signal.SIGKILL)
            raise RuntimeError(f"redis-server did not restart on 127.0.0.1:{self.port}:\n{log}")
        return self

    def close(self):
        """Stop it and remove its data folder."""
        self._halt(signal.SIGKILL)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # ---- use -------------------------------------------------------------------------------------
    def url(self, db=0):
        return f"redis://127.0.0.1:{self.port}/{db}"

    def command(self, *words, db=None, timeout=2.0):
        """One command on a fresh connection; its reply's first line (``+PONG``, ``+OK``, ``:3``)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as conn:
            if db is not None:
                conn.sendall(_encode("SELECT", db))
            conn.sendall(_encode(*words))
            data = b""
            while data.count(b"\r\n") < (2 if db is not None else 1):
                chunk = conn.recv(4096)
                if not chunk:
                    raise ConnectionError("redis-server closed the connection")
                data += chunk
            return data.split(b"\r\n")[1 if db is not None else 0].decode()

    def flush(self, db=0):
        """An empty database ``db`` for the next test."""
        reply = self.command("FLUSHDB", db=db)
        if reply != "+OK":
            raise RuntimeError(f"FLUSHDB answered {reply}")

    def log(self):
        path = self.dir / "redis.log" if self.dir else None
        return path.read_text(errors="replace") if path and path.exists() else ""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.close()

    async def __aenter__(self):
        return self.start()  # a few milliseconds: not worth a thread

    async def __aexit__(self, *exc_info):
        self.close()
