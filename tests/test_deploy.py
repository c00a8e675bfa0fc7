"""The shipped deployment files, run for real: deploy/nginx.conf in front of two server processes, the
systemd unit against the server's options, the Redis snippet in a real redis-server, and scripts/cluster.

nginx runs the very file an administrator copies (tests/nginx.py rewrites only its `listen` port and
upstream ports). Behaviour that a real server cannot show (whether nginx holds a partial answer or
request back) is checked against a raw upstream of the test's own. Conversations shared between
instances need the Redis store and are not tested here.
"""

import asyncio
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

import live
from live import ALLOWED
from nginx import DeployedConfigChanged, DeployedNginx, deployed_config, require_nginx
from poll_client import PollChannel
from server.cli import uvicorn_config
from server.config import DEFAULTS, SETTINGS, Config
from server.transport.channels import Channels
from server_process import free_port  # e2e/, on the path through live
from widget.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "chat-widget@.service"
QUICK = 1.0  # seconds: "at once" for a loopback hop through nginx


def start_servers(count):
    """``count`` servers (memory store, nginx on 127.0.0.1 trusted), started side by side."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: live.start("--trusted-proxy", "127.0.0.1"), range(count)))


@pytest.fixture(scope="module")
def servers():
    require_nginx()
    processes = start_servers(2)
    yield processes
    for process in processes:
        process.stop()


@pytest.fixture(scope="module")
def proxy(servers):
    with DeployedNginx([server.port for server in servers]) as running:
        yield running


def socket_through(proxy, path="/ws?v=1"):
    """A socket to nginx, from the widget's frame: its Origin is the chat server's own (nginx's) origin,
    admitted only if nginx passed the Host with its port."""
    return live.opened(proxy, path, origin=proxy.url)


async def connections(server):
    """Open sockets and channels, as the upstream itself counts them (/healthz, asked directly)."""
    async with httpx.AsyncClient(trust_env=False) as http:
        health = (await http.get(server.url + "/healthz")).json()
    return health["checks"]["websocket:connections"][0]["observedValue"]


async def counted(server, count, timeout=5.0):
    deadline = time.monotonic() + timeout
    while (seen := await connections(server)) != count and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return seen


# ---- the WebSocket, spread and failover, with real servers ----

async def test_a_socket_through_the_shipped_config_is_welcomed_and_answered(proxy):
    """hello -> welcome, a message -> ack and the consultant's reply, through deploy/nginx.conf."""
    async with socket_through(proxy) as ws:
        await live.join(ws)
        await ws.send(json.dumps({"type": "message", "id": "m1", "text": "When are you open?"}))
        frames = [await live.receive(ws)]
        while frames[-1]["type"] != "reply":
            frames.append(await live.receive(ws))
    assert frames[0] == {"type": "ack", "id": "m1", "seq": 1}
    assert frames[-1]["in_reply_to"] == "m1"


async def test_sockets_are_spread_over_both_instances(proxy, servers):
    """Four sockets through nginx: each upstream, asked directly, holds some of them (round robin)."""
    before = [await connections(server) for server in servers]
    sockets = [socket_through(proxy) for _ in range(4)]
    opened = [await ws.__aenter__() for ws in sockets]
    try:
        for ws in opened:
            await live.join(ws)
        deadline = time.monotonic() + 5
        while sum(after := [await connections(s) for s in servers]) - sum(before) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        for ws in sockets:
            await ws.__aexit__(None, None, None)
    gained = [a - b for a, b in zip(after, before)]
    assert sum(gained) == 4 and all(g >= 1 for g in gained), gained


async def test_a_held_poll_through_nginx_answers_as_soon_as_a_frame_is_due(servers):
    """The HTTP fallback through the shipped /poll location: a poll held by the server answers with the
    pong about as soon as the ping is POSTed, not at the poll's 25 s end. One upstream: a channel lives on
    the instance that opened it, and reaching it from another instance needs the Redis store."""
    with DeployedNginx([servers[0].port]) as single:
        async with httpx.AsyncClient(base_url=single.url, timeout=40, trust_env=False) as http:
            channel = PollChannel(http, ALLOWED)
            assert (await channel.open()).headers["server"].startswith("nginx")
            try:
                await channel.join()
                sent = asyncio.Event()
                held = asyncio.create_task(channel.poll(sent=sent))
                await sent.wait()
                await asyncio.sleep(0.3)  # the poll is now held at the server, with nothing to send
                assert not held.done()
                posted = time.monotonic()
                assert (await channel.send({"type": "ping", "t": 5})).status_code == 204
                answer = await asyncio.wait_for(held, 5)
                waited = time.monotonic() - posted
            finally:
                await channel.end()
    assert answer["frames"] == [{"type": "pong", "t": 5}]
    assert waited < QUICK, waited


async def test_killing_one_instance_sends_new_sockets_to_the_other_at_once():
    """SIGKILL one upstream: its socket dies, and every new socket through nginx opens and is welcomed
    at once on the survivor (nginx's connect is refused, it takes the next upstream, and skips the dead
    one afterwards: passive failover, no health checks needed)."""
    require_nginx()
    doomed, survivor = start_servers(2)
    try:
        with DeployedNginx([doomed.port, survivor.port]) as proxy:
            first, second = socket_through(proxy), socket_through(proxy)
            async with first as a, second as b:  # round robin: one on each
                await live.join(a)
                await live.join(b)
                doomed.kill()
                with pytest.raises(ConnectionClosed):
                    for ws in (a, b):  # the doomed instance's socket is cut
                        await ws.send(json.dumps({"type": "ping", "t": 1}))
                        await live.receive(ws)
                baseline = await counted(survivor, 1)
                slowest = 0.0
                fresh = []
                for _ in range(6):
                    began = time.monotonic()
                    ws = await socket_through(proxy).__aenter__()
                    fresh.append(ws)
                    await live.join(ws)
                    slowest = max(slowest, time.monotonic() - began)
                on_survivor = await counted(survivor, baseline + 6)
                for ws in fresh:
                    await ws.close()
            refused = proxy.error_log()
    finally:
        doomed.stop()
        survivor.stop()
    assert slowest < QUICK, slowest
    assert on_survivor == baseline + 6
    assert "Connection refused" in refused  # nginx met the dead instance and moved on by itself


# ---- what the shipped file says, read back from the file nginx loaded ----

def parse(text):
    """nginx's configuration syntax, enough for the shipped file: a list of (name, args, block or None)."""
    tree, stack, words = [], [], []
    stack.append(tree)
    for token in re.findall(r"#[^\n]*|\"[^\"]*\"|'[^']*'|[{};]|[^\s{};#\"']+", text):
        if token.startswith("#"):
            continue
        if token == ";":
            stack[-1].append((words[0], words[1:], None))
            words = []
        elif token == "{":
            block = []
            stack[-1].append((words[0], words[1:], block))
            stack.append(block)
            words = []
        elif token == "}":
            stack.pop()
        else:
            words.append(token)
    return tree


def block(tree, name, *args):
    found = [b for n, a, b in tree if n == name and tuple(a) == args and b is not None]
    assert len(found) == 1, (name, args)
    return found[0]


def effective(levels, name):
    """The value of ``name`` where nginx takes it from: the innermost of ``levels`` that sets it."""
    for level in reversed(levels):
        for directive, args, _ in level:
            if directive == name:
                return args
    return None


def seconds(value):
    number, unit = re.fullmatch(r"([0-9]+)(ms|s|m|h|d)?", value).groups()
    return int(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[unit]


def test_timeouts_leave_the_quiet_socket_to_the_server_and_keepalive_to_nginx(proxy):
    """In the config nginx loaded: the socket's read and send timeouts are not nginx's 60 s but above the
    server's idle timeout (300 s; a hidden tab may ping once a minute), a poll's read timeout is above
    how long the server holds it, and idle upstream connections are dropped by nginx before Uvicorn's
    keep-alive timeout closes them under a request."""
    http = parse(proxy.site_config.read_text())
    server = block(http, "server")
    ws, poll = block(server, "location", "=", "/ws"), block(server, "location", "/poll")
    idle = DEFAULTS["idle_timeout"]
    for name in ("proxy_read_timeout", "proxy_send_timeout"):
        assert seconds(effective([http, server, ws], name)[0]) > idle > 60 > Settings().ping_interval
    assert seconds(effective([http, server, poll], "proxy_read_timeout")[0]) > Channels.poll_timeout
    keepalive = seconds(effective([block(http, "upstream", "chat_widget")], "keepalive_timeout")[0])
    assert keepalive < uvicorn_config(None, Config(store="memory")).timeout_keep_alive
    assert effective([http, server, ws], "proxy_http_version") == ["1.1"]


# ---- what nginx does to requests and answers, against a raw upstream ----

class RawUpstream:
    """A loopback HTTP upstream that hands each request's head, and its connection, to the test."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = queue.Queue()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._read_head, args=(connection,), daemon=True).start()

    def _read_head(self, connection):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        self.requests.put((head.decode("latin-1"), rest, connection))

    def next(self, timeout=QUICK):
        """(request line, headers with lowercase names, body bytes read so far, connection)."""
        head, rest, connection = self.requests.get(timeout=timeout)
        line, *fields = head.split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (f.partition(":") for f in fields)}
        return line, headers, rest, connection

    def close(self):
        self.listener.close()


@pytest.fixture
def raw():
    require_nginx()
    upstream = RawUpstream()
    with DeployedNginx([upstream.port]) as running:
        yield running, upstream
    upstream.close()


def send_head(proxy, text):
    client = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
    client.sendall(text.encode("latin-1"))
    return client


def test_a_poll_is_passed_on_unbuffered_both_ways(raw):
    """/poll/<id>: nginx hands the request on before its body is complete, and the answer's first bytes
    to the visitor before the answer is complete. A buffering proxy would hold either until the end."""
    proxy, upstream = raw
    client = send_head(proxy, "POST /poll/abc HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
                              "Content-Length: 10\r\n\r\n12345")
    line, headers, body, connection = upstream.next()  # with request buffering nginx would wait for 5 more bytes
    assert line == "POST /poll/abc HTTP/1.1"
    client.sendall(b"67890")
    while len(body) < 10:
        body += connection.recv(100)
    assert body == b"1234567890"
    answer = b'{"from":0,"frames":[]}'
    # With a Content-Length, as the server sends its answers: a buffering nginx passes on nothing, not
    # even the status line, until the whole body is in (it passes a chunked answer's chunks on anyway).
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                       b"Connection: close\r\n\r\n%s" % (len(answer), answer[:9]))
    client.settimeout(QUICK)
    received = b""
    while not received.endswith(answer[:9]):
        received += client.recv(65536)
    connection.sendall(answer[9:])
    connection.close()
    while not received.endswith(answer):
        received += client.recv(65536)
    client.close()


@pytest.mark.parametrize("path, upgrade", [("/", False), ("/poll/abc", False), ("/ws?v=1", True)])
def test_every_location_sends_the_proxy_headers_over_http_1_1(raw, path, upgrade):
    """Host with its port (the same-origin check), X-Forwarded-For and -Proto (read with --trusted-proxy),
    HTTP/1.1 with keepalive to the instance, and on /ws the upgrade: in every location, because one
    proxy_set_header in a location would drop the server block's for it."""
    proxy, upstream = raw
    extra = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" \
            "Sec-WebSocket-Version: 13\r\n" if upgrade else ""
    host = f"127.0.0.1:{proxy.port}"
    client = send_head(proxy, f"GET {path} HTTP/1.1\r\nHost: {host}\r\nX-Forwarded-For: 203.0.113.7\r\n{extra}\r\n")
    line, headers, _, connection = upstream.next()
    connection.close()
    client.close()
    assert line == f"GET {path} HTTP/1.1"
    assert headers["host"] == host
    assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    if upgrade:
        assert headers["upgrade"] == "websocket" and headers["connection"].lower() == "upgrade"
    else:
        assert "upgrade" not in headers and "connection" not in headers  # keep-alive, HTTP/1.1's default


def test_metrics_are_refused_by_nginx_however_spelled(raw):
    """/metrics, with a query, a doubled slash, an encoded letter or a trailing slash: nginx answers 404
    itself and none reaches the instance (the next request to arrive is the marker sent after them)."""
    proxy, upstream = raw
    for path in ("/metrics", "/metrics?format=prometheus", "//metrics", "/%6Detrics", "/metrics/"):
        with send_head(proxy, f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") as client:
            answer = b""
            while chunk := client.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 404 ") and b"<center>nginx" in answer, (path, answer)
    client = send_head(proxy, "GET /marker HTTP/1.1\r\nHost: x\r\n\r\n")
    line, _, _, connection = upstream.next()
    connection.close()
    client.close()
    assert line == "GET /marker HTTP/1.1"


# ---- the harness's rewrite: the shipped file's shape is checked, not assumed ----

def test_the_rewrite_changes_only_the_listen_port_and_the_upstream_ports():
    """Apart from those lines the test runs the file byte for byte; an unexpected shape stops it."""
    shipped = (DEPLOY / "nginx.conf").read_text()
    rewritten = deployed_config(shipped, 8123, [9001, 9002])
    changed = [line for line in rewritten.splitlines() if line not in shipped.splitlines()]
    assert [line.strip() for line in changed] == [
        "server 127.0.0.1:9001 max_fails=1 fail_timeout=2s;", "server 127.0.0.1:9002 max_fails=1 fail_timeout=2s;",
        "listen 127.0.0.1:8123;"]
    assert len(rewritten.splitlines()) == len(shipped.splitlines()) - 1  # three upstreams became two
    for broken in (shipped.replace("listen 80;", "listen 8080;"), shipped.replace("listen 80;", "listen 80;\n    listen [::]:80;"),
                   shipped.replace("server 127.0.0.1:8002", "server localhost:8002"),
                   shipped.replace("upstream chat_widget", "upstream chat")):
        with pytest.raises(DeployedConfigChanged):
            deployed_config(broken, 8123, [9001])


# ---- systemd, the environment file, Redis ----

def unit_lines():
    return {key: value for key, _, value in (line.partition("=") for line in UNIT.read_text().splitlines()
                                             if "=" in line and not line.startswith("#"))}


def test_the_unit_names_only_options_the_server_has():
    """ExecStart's options are in `chat-widget serve --help`; the fd limit covers max_connections;
    systemd waits longer than the server's graceful drain before SIGKILL."""
    unit = unit_lines()
    command = unit["ExecStart"].split()
    assert command[1:3] == ["serve", "--host"] and "%i" in command
    help_text = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--help"], cwd=ROOT, capture_output=True,
                               text=True, timeout=30, check=True).stdout
    listed = set(re.findall(r"(--[a-z][a-z-]*)", help_text))
    options = [word for word in command if word.startswith("--")]
    assert options and set(options) <= listed, set(options) - listed
    assert int(unit["LimitNOFILE"]) > DEFAULTS["max_connections"]
    drain = uvicorn_config(None, Config(store="memory")).timeout_graceful_shutdown
    assert seconds(unit["TimeoutStopSec"]) > drain
    assert unit["Restart"] == "always" and unit["KillSignal"] == "SIGTERM"
    assert unit["EnvironmentFile"] == "-/etc/chat-widget/env"


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    """systemd's own check (where the tool exists), on an instance of the template whose program path
    points at this checkout's chat-widget (the shipped one is /opt/chat-widget's). Warnings fail too."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    program = Path(sys.executable).parent / "chat-widget"
    text = UNIT.read_text()
    assert text.count("/opt/chat-widget/.venv/bin/chat-widget") == 1
    instance = tmp_path / "chat-widget@8001.service"
    instance.write_text(text.replace("/opt/chat-widget/.venv/bin/chat-widget", str(program)))
    result = subprocess.run([tool, "verify", str(instance)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_the_example_environment_names_real_settings_with_valid_values():
    """Every variable in deploy/env.example (commented ones too) is a setting's environment variable, and
    the server's own check accepts every value as systemd would read it (the rest of the line)."""
    pairs = re.findall(r"^#?(CHAT_WIDGET_[A-Z_]+)=(.*)$", (DEPLOY / "env.example").read_text(), re.M)
    names = {name for name, _ in pairs}
    known = {setting.env for setting in SETTINGS}
    assert {"CHAT_WIDGET_STORE", "CHAT_WIDGET_TRUSTED_PROXIES", "CHAT_WIDGET_ALLOW_ORIGINS",
            "CHAT_WIDGET_METRICS_ALLOW"} <= names
    assert names <= known, names - known
    config = Config.from_environment(dict(pairs))
    assert config.store_kind == "redis" and [str(n) for n in config.trusted_proxies] == ["127.0.0.1"]


def redis_command(port, *words):
    """One command in RESP; the reply as text (arrays flattened to lines)."""
    request = f"*{len(words)}\r\n" + "".join(f"${len(w)}\r\n{w}\r\n" for w in words)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request.encode())
        time.sleep(0.05)
        reply = connection.recv(65536).decode()
    return [line for line in reply.split("\r\n") if line and line[0] not in "*$"]


def test_the_redis_snippet_runs_and_means_what_it_says(tmp_path):
    """redis-server 7 accepts deploy/redis.conf (port and data folder given on its command line), and
    reports append-only with fsync every second and no eviction."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(binary, os.X_OK):
        pytest.skip("redis-server is not installed")
    port = free_port()
    redis = subprocess.Popen([binary, str(DEPLOY / "redis.conf"), "--port", str(port), "--dir", str(tmp_path)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                if redis_command(port, "PING") == ["+PONG"]:
                    break
            except OSError:
                pass
            assert redis.poll() is None and time.monotonic() < deadline, redis.stdout.read() if redis.poll() else ""
            time.sleep(0.02)
        settings = {}
        for name in ("appendonly", "appendfsync", "maxmemory-policy", "bind"):
            key, value = redis_command(port, "CONFIG", "GET", name)
            settings[key] = value
    finally:
        redis.terminate()
        redis.wait(5)
        redis.stdout.close()
    assert settings == {"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction",
                        "bind": "127.0.0.1 -::1"}


# ---- make cluster ----

def test_the_cluster_script_serves_through_nginx_and_stops_on_ctrl_c():
    """scripts/cluster --store memory: two instances behind the shipped nginx answer through the printed
    URL; SIGINT (Ctrl-C) stops every process it started and it exits 0."""
    require_nginx()
    script = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "cluster"), "--store", "memory", "--instances", "2"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines = []
    try:
        while not lines or lines[-1] != "Try:\n":  # the URL and every pid come before it
            line = script.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        url = re.search(r"chat through nginx: (http://\S+)/", "".join(lines)).group(1)
        health = httpx.get(url + "/healthz", trust_env=False)
        pids = [int(pid) for line in lines for pid in re.findall(r"pid (\d+)", line)]
        script.send_signal(signal.SIGINT)
        lines += script.stdout.readlines()
        code = script.wait(15)
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait(5)
        script.stdout.close()
    assert health.status_code == 200 and health.headers["server"].startswith("nginx")
    assert code == 0, "".join(lines)
    assert len(pids) >= 3  # two instances and nginx
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
