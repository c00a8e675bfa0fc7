"""A real nginx in front of the chat server on a loopback port, configured right or without the Upgrade headers.

Deployments put nginx in front of the server; the common mistake is a ``location`` that proxies
``/ws`` without ``proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";``.
nginx then forwards the upgrade as a plain HTTP/1.0 GET: every HTTP route works and every WebSocket
handshake fails. ``Nginx(upstream_port, websocket_headers=False)`` is that deployment;
``websocket_headers=True`` is the correct one (HTTP/1.1, the two headers, a long read timeout).
``proxy_buffering`` stays at nginx's default (on): the buffering proxy an HTTP fallback must survive.

``DeployedNginx(upstream_ports)`` (or ``Nginx.deployed(upstream_ports)``) runs the shipped
``deploy/nginx.conf`` instead, rewritten only where a test machine must differ: its ``listen`` port
and the upstream's ``server`` lines. It refuses to start when the file's shape no longer lets those
two rewrites apply, so the shipped file cannot drift away from what the tests run.

Each instance is its own nginx process (master and one worker) with every path it writes inside a
temporary directory, so it needs no root and leaves nothing behind::

    with Nginx(server.port) as proxy:            # sync tests (and e2e), or
        httpx.get(proxy.url + "/healthz")        # `async with Nginx(...)` in async tests
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENSURE_NGINX = ROOT / "scripts" / "ensure-nginx"
DEPLOY_CONFIG = ROOT / "deploy" / "nginx.conf"

# The upgrade as nginx's documentation writes it (https://nginx.org/en/docs/http/websocket.html).
WEBSOCKET_DIRECTIVES = """
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 3600s;
            proxy_send_timeout 3600s;"""

# The main configuration every test nginx runs: its own pid, logs and temporary paths in ``tmp``;
# ``site`` is what goes in http{} (where conf.d/*.conf is included on a real machine).
MAIN_CONFIG = """{user}worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log notice;
events {{ worker_connections {connections}; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{site}
}}
"""

# One upstream, with or without the upgrade headers (the harness's own site).
SITE = """    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://{upstream_host}:{upstream_port};
            # The public host:port, so the server's same-origin check sees what the browser used.
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;{websocket}{extra}
        }}
    }}"""

_LISTEN = re.compile(r"^([ \t]*)listen[ \t]+80;[ \t]*$", re.M)
_ANY_LISTEN = re.compile(r"^[ \t]*listen\b", re.M)
_UPSTREAM = re.compile(r"^[ \t]*upstream[ \t]+chat_widget[ \t]*\{[^{}]*\}", re.M)
_UPSTREAM_SERVER = re.compile(r"^([ \t]*)server[ \t]+127\.0\.0\.1:[0-9]+((?:[ \t]+[^;\s]+)*);[ \t]*\n", re.M)
_ANY_SERVER = re.compile(r"^[ \t]*server\b", re.M)


class DeployedConfigChanged(RuntimeError):
    """deploy/nginx.conf no longer has the shape the test rewrite expects: fix the file or tests/nginx.py."""


def deployed_config(text, port, upstream_ports):
    """deploy/nginx.conf's ``text`` with its one ``listen 80;`` on ``127.0.0.1:port`` and the
    ``upstream chat_widget`` block's ``server 127.0.0.1:PORT ...;`` lines replaced by one per
    ``upstream_ports`` (their parameters kept). Nothing else changes; a shape the rewrite does not
    recognise raises ``DeployedConfigChanged``."""
    if not upstream_ports:
        raise ValueError("at least one upstream port")
    listens = _LISTEN.findall(text)
    if len(listens) != 1 or len(_ANY_LISTEN.findall(text)) != 1:
        raise DeployedConfigChanged("deploy/nginx.conf must have exactly one active `listen` line, `listen 80;`")
    text = _LISTEN.sub(lambda m: f"{m.group(1)}listen 127.0.0.1:{port};", text)
    blocks = list(_UPSTREAM.finditer(text))
    if len(blocks) != 1:
        raise DeployedConfigChanged("deploy/nginx.conf must have one `upstream chat_widget { ... }` block")
    block = blocks[0].group(0)
    servers = list(_UPSTREAM_SERVER.finditer(block))
    runs_together = all(a.end() == b.start() for a, b in zip(servers, servers[1:]))
    if not servers or len(servers) != len(_ANY_SERVER.findall(block)) or not runs_together:
        raise DeployedConfigChanged("the upstream's `server` lines must be consecutive lines "
                                    "`server 127.0.0.1:PORT [parameters];`")
    indent, parameters = servers[0].group(1), servers[0].group(2)
    lines = "".join(f"{indent}server 127.0.0.1:{p}{parameters};\n" for p in upstream_ports)
    block = block[:servers[0].start()] + lines + block[servers[-1].end():]
    text = text[:blocks[0].start()] + block + text[blocks[0].end():]
    if "proxy_pass http://chat_widget;" not in text:
        raise DeployedConfigChanged("deploy/nginx.conf no longer proxies to the `chat_widget` upstream")
    return text


def _user_line():
    # As root the worker switches to `nobody`, which must reach the temp paths nginx creates.
    return "user nobody nogroup;\n" if os.geteuid() == 0 else ""


class NginxUnavailable(RuntimeError):
    """No nginx binary, and scripts/ensure-nginx could not install one."""


def nginx_binary(install=True):
    """The nginx binary's path; runs scripts/ensure-nginx when there is none (``install``), else raises."""
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    if install:
        result = subprocess.run([str(ENSURE_NGINX)], capture_output=True, text=True, timeout=300)
        if result.returncode == 0:
            return nginx_binary(install=False)
        raise NginxUnavailable(f"nginx is missing and scripts/ensure-nginx failed: {result.stderr.strip()}")
    raise NginxUnavailable("nginx is missing (scripts/ensure-nginx installs it)")


def require_nginx():
    """In a test or fixture: skip, saying why, when nginx is absent and cannot be installed."""
    import pytest

    try:
        return nginx_binary()
    except NginxUnavailable as error:
        pytest.skip(str(error))


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Nginx:
    """nginx on ``127.0.0.1:port`` (0 picks a free one) proxying everything to ``upstream_port``."""

    def __init__(self, upstream_port, websocket_headers=False, port=0, upstream_host="127.0.0.1", extra=""):
        self.extra = extra  # more directives for the location (a proxy's own headers, say)
        self.upstream_port = upstream_port
        self.upstream_host = upstream_host
        self.websocket_headers = websocket_headers
        self.port = port
        self.url = None
        self.process = None
        self.tmp = None
        self.started_in = None  # seconds from spawn to the port answering

    def start(self, timeout=10):
        binary = nginx_binary()
        self.tmp = Path(tempfile.mkdtemp(prefix="chat-nginx-"))
        # As root the worker switches to `nobody`, which must reach the temp paths nginx creates here.
        self.tmp.chmod(0o755)
        wanted = self.port
        for _ in range(3):  # a free port picked here can be taken before nginx binds it: pick again
            self.port = wanted or _free_port()
            self._write_config()
            (self.tmp / "nginx.pid").unlink(missing_ok=True)
            started = time.monotonic()
            self.process = subprocess.Popen(
                [binary, "-p", str(self.tmp), "-c", str(self.tmp / "nginx.conf"), "-e", str(self.tmp / "error.log"),
                 "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
            if self._wait_until_listening(timeout):
                self.started_in = time.monotonic() - started
                self.url = f"http://127.0.0.1:{self.port}"
                return self
            log = self.error_log()
            self._reap()
            if wanted or "Address already in use" not in log:
                break
        self.stop()
        raise RuntimeError(f"nginx did not start on 127.0.0.1:{self.port}:\n{log}")

    @classmethod
    def deployed(cls, upstream_ports, port=0, source=DEPLOY_CONFIG):
        """The shipped deploy/nginx.conf in front of ``upstream_ports`` (see ``DeployedNginx``)."""
        return DeployedNginx(upstream_ports, port=port, source=source)

    def _write_config(self):
        site = SITE.format(port=self.port, upstream_host=self.upstream_host, upstream_port=self.upstream_port,
                           websocket=WEBSOCKET_DIRECTIVES if self.websocket_headers else "",
                           extra="\n            " + self.extra if self.extra else "")
        self._write_main(site, connections=256)

    def _write_main(self, site, connections):
        (self.tmp / "nginx.conf").write_text(MAIN_CONFIG.format(user=_user_line(), tmp=self.tmp,
                                                                connections=connections, site=site))

    def _wait_until_listening(self, timeout):
        # nginx writes its pid file only once its sockets are bound: a port answering before that
        # may be someone else's (the port nginx is about to fail to bind).
        pid_file = self.tmp / "nginx.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if pid_file.exists() and pid_file.read_text().strip() == str(self.process.pid):
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                    return True
                except OSError:
                    pass
            time.sleep(0.01)
        return False

    def error_log(self):
        """nginx's error log and anything it wrote to stderr before opening the log."""
        text = ""
        if self.tmp and (self.tmp / "error.log").exists():
            text = (self.tmp / "error.log").read_text(errors="replace")
        if self.process and self.process.poll() is not None and self.process.stderr:
            text += self.process.stderr.read().decode(errors="replace")
        return text

    def _reap(self):
        """Stop nginx: SIGTERM is its fast shutdown (SIGQUIT would wait for open WebSockets to end)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
            except ProcessLookupError:
                pass
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def stop(self):
        self._reap()
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    async def __aenter__(self):
        return self.start()  # about 10 ms: not worth a thread

    async def __aexit__(self, *exc_info):
        self.stop()


class DeployedNginx(Nginx):
    """The shipped ``deploy/nginx.conf`` (or ``source``, a copy) on ``127.0.0.1:port``, its upstream
    being ``upstream_ports`` on 127.0.0.1. ``site_config`` is the file nginx loaded, once started."""

    def __init__(self, upstream_ports, port=0, source=DEPLOY_CONFIG):
        super().__init__(None, websocket_headers=True, port=port)
        self.upstream_ports = list(upstream_ports)
        self.source = Path(source)
        deployed_config(self.source.read_text(), 80, self.upstream_ports)  # a changed shape fails here, early

    @property
    def site_config(self):
        return self.tmp / "chat-widget.conf"

    def _write_config(self):
        self.site_config.write_text(deployed_config(self.source.read_text(), self.port, self.upstream_ports))
        self._write_main(f"    include {self.site_config};", connections=1024)
