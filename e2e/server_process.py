"""The real chat server in a subprocess on a loopback port, for end-to-end tests."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVING = re.compile(r"serving (http://\S+?)/? ")
# Every test client comes from 127.0.0.1, one address doing the work of hundreds of visitors: the
# per-address budgets are opened wide unless a test sets them (the budget tests use the defaults).
ONE_ADDRESS_MANY_VISITORS = {
    "CHAT_WIDGET_ADDRESS_MESSAGES_PER_MINUTE": "1000000",
    "CHAT_WIDGET_ADDRESS_BYTES_PER_MINUTE": str(1 << 40),
    "CHAT_WIDGET_ADDRESS_CONVERSATIONS_PER_HOUR": "1000000",
    "CHAT_WIDGET_ADDRESS_REPLIES_PER_MINUTE": "1000000",
    "CHAT_WIDGET_ADDRESS_WAITING_REPLIES": "1000",
}


def free_port():
    """A loopback port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """Starts ``chat-widget serve`` and knows its URL; can be killed, frozen and restarted on the same port."""

    def __init__(self, *args, env=None, host="127.0.0.1", port=0):
        self.args = list(args)
        self.env = env or {}
        self.host = host
        self.port = port
        self.url = None
        self.process = None
        self.output = []

    def start(self, timeout=15):
        command = [sys.executable, "-m", "server.cli", "serve", "--host", self.host, "--port", str(self.port), *self.args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **ONE_ADDRESS_MANY_VISITORS, **self.env}
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
        ready = threading.Event()

        def pump(stream):
            try:
                for line in stream:
                    self.output.append(line)
                    match = SERVING.search(line)
                    if match and not ready.is_set():
                        self.url = match.group(1)
                        self.port = int(self.url.rsplit(":", 1)[1])
                        ready.set()
            except (ValueError, OSError):  # the pipe was closed by stop()
                pass

        threading.Thread(target=pump, args=(self.process.stdout,), daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError("server did not start:\n" + "".join(self.output))
        return self

    def kill(self):
        """SIGKILL: the socket dies without a close frame (the browser sees 1006)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(5)

    def terminate(self, timeout=15):
        """SIGTERM: a graceful stop; returns the exit code."""
        os.killpg(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout)

    def freeze(self):
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self):
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self):
        if self.process and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGCONT)
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

        if self.process and self.process.stdout:
            self.process.stdout.close()

    def log_text(self):
        return "".join(self.output)
