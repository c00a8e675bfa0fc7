"""``chat-widget doctor`` against the real server (a subprocess on loopback) and deliberately broken paths."""

import asyncio
import json
import re
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import server.doctor.checks as checks_module
from server.doctor import Probe, doctor, parse_target
from nginx import Nginx, require_nginx
from tcp_proxy import IdleCuttingProxy, Relay

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "e2e"))
from server_process import ServerProcess  # noqa: E402

SHOP = "https://shop.example.com"


@pytest.fixture(scope="module")
def server():
    """The server with default settings: only its own origin may chat."""
    process = ServerProcess().start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def shop_server():
    """The server embedded on another site: only https://shop.example.com may chat."""
    process = ServerProcess("--allow-origin", SHOP).start()
    yield process
    process.stop()


async def run_doctor(*args):
    """Run the doctor as a separate process; return (exit code, stdout)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.doctor", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert not stderr, stderr.decode()
    return process.returncode, stdout.decode()


async def run_doctor_json(*args):
    code, stdout = await run_doctor(*args, "--json")
    report = json.loads(stdout)
    return code, report, {check["name"]: check for check in report["checks"]}


def statuses(checks):
    return {name: check["status"] for name, check in checks.items()}


def unused_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_healthy_server_passes_every_check(server):
    """A healthy server passes every check, exits 0, both output forms say so, and it takes seconds, not more."""
    started = time.monotonic()
    (code, text), (json_code, report, checks) = await asyncio.gather(
        run_doctor(server.url), run_doctor_json(server.url))
    elapsed = time.monotonic() - started
    assert code == 0 and json_code == 0
    assert report["ok"] is True and report["url"] == server.url
    assert list(checks) == ["url", "scheme", "dns", "tcp", "health", "cors", "origin", "embed", "fallback", "handshake",
                            "welcome", "ping", "hold"]
    assert set(statuses(checks).values()) == {"pass"}, checks
    assert all(check["fix"] is None and check["class"] is None for check in checks.values())
    assert "PASS  health     200 application/health+json, status pass" in text
    assert re.search(r"PASS  hold       open 3 s, \d+ pongs", text), text
    assert text.rstrip().endswith("ok: 13 pass")
    assert elapsed < 3 + 3, elapsed  # the 3 s hold plus start-up and the other checks


async def test_server_down_fails_tcp_and_skips_the_rest():
    """Nothing listening: tcp fails with a fix, everything after it is skipped, exit 1."""
    code, report, checks = await run_doctor_json(f"http://127.0.0.1:{unused_port()}")
    assert code == 1 and report["ok"] is False
    assert checks["tcp"]["status"] == "fail" and "refused" in checks["tcp"]["detail"]
    assert "start the server" in checks["tcp"]["fix"]
    for name in ("health", "cors", "origin", "embed", "handshake", "welcome", "ping", "hold"):
        assert checks[name]["status"] == "skip", name


async def test_disallowed_origin_is_explained(shop_server):
    """An origin the server does not allow: the handshake's 403 and /ws-check both say so, with the fix."""
    evil = "https://evil.example.net"
    code, _, checks = await run_doctor_json(shop_server.url, "--origin", evil)
    assert code == 1
    assert checks["handshake"]["status"] == "fail" and "403" in checks["handshake"]["detail"]
    assert checks["handshake"]["fix"] == f"origin not allowed: add it with --allow-origin {evil}"
    assert checks["origin"]["status"] == "fail" and "not allowed" in checks["origin"]["detail"]
    assert checks["cors"]["status"] == "fail"
    assert checks["welcome"]["status"] == checks["ping"]["status"] == checks["hold"]["status"] == "skip"


async def test_allowed_cross_origin_passes_cors(shop_server):
    """The allowed site's origin gets exact CORS headers on preflight and GET, and the socket works."""
    code, _, checks = await run_doctor_json(shop_server.url, "--origin", SHOP)
    assert code == 0, checks
    assert checks["cors"] == {"name": "cors", "status": "pass", "detail": f"preflight and GET allow {SHOP}", "fix": None,
                              "class": None}
    assert set(statuses(checks).values()) == {"pass"}


async def test_wrong_socket_path_is_explained(server):
    """A socket URL that is not the /ws endpoint fails the handshake with the path explanation."""
    code, _, checks = await run_doctor_json(server.url, "--socket-url", f"ws://127.0.0.1:{server.port}/nope")
    assert code == 1
    assert checks["handshake"]["status"] == "fail"
    assert checks["handshake"]["fix"].startswith("wrong socket path or not a WebSocket endpoint")
    assert checks["handshake"]["class"] is None  # a wrong path is the deployment's setting, not interference
    assert checks["health"]["status"] == "pass"  # the HTTP side is fine; only the socket URL is wrong


async def test_proxy_cutting_idle_sockets_fails_idle_check(server):
    """Through a proxy that cuts sockets silent for 1 s, a 2 s idle socket dies and the fix names the timeout."""
    async with IdleCuttingProxy(server.port, idle=1.0) as proxy:
        code, _, checks = await run_doctor_json(f"http://127.0.0.1:{proxy.port}", "--idle", "2")
    assert code == 1
    assert checks["ping"]["status"] == "pass"
    assert checks["idle"]["status"] == "fail", checks["idle"]
    assert "closes idle sockets after < 2 s" in checks["idle"]["fix"]


async def test_proxy_withholding_frames_fails_welcome_as_interference(server):
    """A proxy that completes the upgrade and then swallows the server's frames: welcome fails, naming the proxy."""
    with Relay(server.port, mode="withhold") as relay:
        started = time.monotonic()
        (code, text), (_, _, checks) = await asyncio.gather(
            run_doctor(relay.url, "--timeout", "2"), run_doctor_json(relay.url, "--timeout", "2"))
        elapsed = time.monotonic() - started
    assert code == 1
    assert checks["health"]["status"] == checks["handshake"]["status"] == "pass"  # HTTP and the 101 get through
    welcome = checks["welcome"]
    assert welcome["status"] == "fail" and welcome["class"] == "interference"
    assert welcome["detail"] == ("the WebSocket opened but no frame came back within 2 s: a proxy on the path is "
                                 "withholding the server's frames (buffering proxy or antivirus); the widget will "
                                 "fall back to HTTP")
    assert "antivirus" in welcome["fix"]
    assert checks["ping"]["status"] == checks["hold"]["status"] == "skip"
    assert "class: interference (the server answers HTTP but live connections fail" in text
    assert elapsed < 2 + 3, elapsed


async def test_proxy_cutting_live_connections_fails_hold_as_interference(server):
    """A proxy that cuts the socket 1 s after the upgrade: welcome and ping pass, hold says when and why it closed."""
    with Relay(server.port, mode="cut", cut_after=1.0) as relay:
        started = time.monotonic()
        code, _, checks = await run_doctor_json(relay.url)
        elapsed = time.monotonic() - started
    assert code == 1
    assert checks["welcome"]["status"] == checks["ping"]["status"] == "pass"
    hold = checks["hold"]
    assert hold["status"] == "fail" and hold["class"] == "interference", hold
    seconds = re.fullmatch(r"the connection was closed (\d+\.\d) s after it opened: a proxy on the path cuts live "
                           r"connections", hold["detail"])
    assert seconds and 0.9 <= float(seconds.group(1)) <= 1.5, hold["detail"]
    assert elapsed < 1 + 3, elapsed  # the hold ends when the cut comes, not after its full 3 s


async def test_nginx_without_upgrade_headers_is_explained_with_the_fix(server):
    """nginx proxying /ws without the Upgrade headers: HTTP passes, the handshake fails, the fix is nginx's lines."""
    require_nginx()
    with Nginx(server.port, websocket_headers=False) as proxy:
        code, _, checks = await run_doctor_json(proxy.url)
    assert code == 1
    assert checks["health"]["status"] == checks["origin"]["status"] == "pass"
    handshake = checks["handshake"]
    assert handshake["status"] == "fail" and handshake["class"] == "interference"
    assert handshake["detail"].startswith("HTTP 426 Upgrade required: the chat's WebSocket endpoint got a plain GET "
                                             "instead of 101") and "answered by nginx" in handshake["detail"]
    assert handshake["detail"].endswith("as to a plain GET: the upgrade did not reach the server")
    for directive in ("proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
                      'proxy_set_header Connection "upgrade";'):
        assert directive in handshake["fix"]
    # ... and visitors still chat, over the HTTP fallback (through nginx's buffering proxy).
    assert checks["fallback"]["status"] == "pass" and "long-polling" in checks["fallback"]["detail"]


async def test_a_proxy_that_forbids_framing_is_found_by_the_embed_check(server):
    """nginx adding X-Frame-Options: a warning while the frame's frame-ancestors is there (browsers then
    ignore X-Frame-Options), a failure when the proxy also drops the CSP (sites get a refused frame)."""
    require_nginx()
    with Nginx(server.port, websocket_headers=True, extra="add_header X-Frame-Options DENY always;") as proxy:
        code, _, checks = await run_doctor_json(proxy.url)
    embed = checks["embed"]
    assert embed["status"] == "warn" and "X-Frame-Options: DENY" in embed["detail"] and code == 0
    assert "remove X-Frame-Options" in embed["fix"]
    extra = "add_header X-Frame-Options DENY always; proxy_hide_header Content-Security-Policy;"
    with Nginx(server.port, websocket_headers=True, extra=extra) as proxy:
        code, _, checks = await run_doctor_json(proxy.url)
    assert code == 1 and checks["embed"]["status"] == "fail" and "X-Frame-Options: DENY" in checks["embed"]["detail"]
    assert checks["handshake"]["status"] == "pass"  # only the embedding is broken


async def test_embed_check_passes_for_an_allowed_site(shop_server):
    _, _, checks = await run_doctor_json(shop_server.url, "--origin", "https://shop.example.com")
    assert checks["embed"]["status"] == "pass" and "https://shop.example.com may frame" in checks["embed"]["detail"]


@pytest.mark.parametrize("sources, origin, listed", [
    (["'self'", "https://shop.example.com"], "https://shop.example.com", True),
    (["'self'", "https://shop.example.com"], "https://shop.example.com.evil.net", False),
    (["'self'", "https://*.example.com"], "https://a.example.com", True),
    (["'self'", "https://*.example.com"], "http://a.example.com", False),
    (["'self'"], "http://127.0.0.1:8000", True),
    (["'self'"], "http://127.0.0.1:8001", False),
    (["'none'"], "http://127.0.0.1:8000", False),
])
def test_frame_ancestors_sources_are_read_as_browsers_do(sources, origin, listed):
    assert checks_module._origin_listed(origin, sources, "http://127.0.0.1:8000") is listed


async def test_fallback_turned_off_is_a_warning_that_names_the_setting():
    server = ServerProcess(env={"CHAT_WIDGET_HTTP_FALLBACK": "off"}).start()
    try:
        _, _, checks = await run_doctor_json(server.url)
    finally:
        server.stop()
    assert checks["fallback"]["status"] == "warn" and "--http-fallback auto" in checks["fallback"]["fix"]


class FakeFallback:
    """Answers the doctor's fallback requests as ``answers`` says ({(method, path): httpx.Response or an
    exception}; anything else 404) and records them: the fallback check without a server."""

    def __init__(self, answers):
        self.answers = answers
        self.requests = []

    def __call__(self, request):
        self.requests.append((request.method, request.url.path))
        answer = self.answers.get((request.method, request.url.path), httpx.Response(404, text="Not Found"))
        if isinstance(answer, Exception):
            raise answer
        return answer


async def check_fallback(fake):
    target, _ = parse_target("http://chat.test", SHOP, None, None, 1.0)
    async with Probe(target) as probe:
        await probe.http.aclose()
        probe.http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
        return await probe.check_fallback()


OPENED = httpx.Response(200, json={"channel": "c1", "poll_timeout": 25})


CHANNEL_REQUESTS = [("POST", "/poll"), ("POST", "/poll/c1"), ("GET", "/poll/c1"), ("POST", "/poll/c1/close")]


@pytest.mark.parametrize("answers, detail, requests", [
    pytest.param({("POST", "/poll"): httpx.Response(200, json={"close": {"code": 1013, "reason": "server is full"}})},
                 "the server closed the fallback channel with 1013: server is full", [("POST", "/poll")],
                 id="refused-at-open"),
    pytest.param({("POST", "/poll"): OPENED, ("POST", "/poll/c1"): httpx.Response(204),
                  ("GET", "/poll/c1"): httpx.Response(200, json={"from": 0, "frames": [],
                                                                 "close": {"code": 1012, "reason": "restarting"}})},
                 "the server closed the fallback channel with 1012: restarting", CHANNEL_REQUESTS,
                 id="closed-in-the-poll"),
])
async def test_fallback_close_is_reported_as_a_close(answers, detail, requests):
    """A close in the open answer or in the poll is named with its code and reason, not as "no welcome"."""
    fake = FakeFallback(answers)
    check = await check_fallback(fake)
    assert check.status == "fail" and check.detail == detail, check
    assert fake.requests == requests


async def test_fallback_channel_is_closed_even_when_the_poll_fails():
    """A poll that times out fails the check, and the doctor's channel is still closed."""
    fake = FakeFallback({("POST", "/poll"): OPENED, ("POST", "/poll/c1"): httpx.Response(204),
                         ("GET", "/poll/c1"): httpx.ReadTimeout("held too long"),
                         ("POST", "/poll/c1/close"): httpx.Response(204)})
    check = await check_fallback(fake)
    assert check.status == "fail" and "no answer within 1 s" in check.detail
    assert fake.requests == CHANNEL_REQUESTS


async def test_server_without_the_fallback_is_a_warning_to_update_it():
    """/poll unknown (404 without fallback_disabled): an older server, a warning that says to update it."""
    check = await check_fallback(FakeFallback({}))
    assert check.status == "warn" and "has no HTTP fallback" in check.detail and "update" in check.fix


async def test_nginx_with_upgrade_headers_passes_every_check(server):
    """nginx configured as its WebSocket guide says: every check passes through it, the 3 s hold included."""
    require_nginx()
    with Nginx(server.port, websocket_headers=True) as proxy:
        code, _, checks = await run_doctor_json(proxy.url)
    assert code == 0, checks
    assert set(statuses(checks).values()) == {"pass"}


async def test_idle_socket_survives_without_proxy(server):
    """Directly to the server a 2 s silent socket stays open (its own pings come only every 20 s)."""
    code, _, checks = await run_doctor_json(server.url, "--idle", "2")
    assert code == 0
    assert checks["idle"]["status"] == "pass", checks["idle"]


async def test_server_that_never_answers_the_upgrade_times_out():
    """A listener that accepts TCP but never answers: the handshake fails with the timeout explanation, in time."""
    connections = []

    async def swallow(reader, writer):
        connections.append(writer)
        while await reader.read(65536):
            pass

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    try:
        started = time.monotonic()
        code, _, checks = await run_doctor_json(f"http://127.0.0.1:{port}", "--timeout", "1")
        elapsed = time.monotonic() - started
    finally:
        silent.close()
        for writer in connections:
            writer.close()
        await silent.wait_closed()
    assert code == 1
    assert checks["tcp"]["status"] == "pass"
    assert checks["health"]["status"] == "fail" and checks["origin"]["status"] == "skip"
    assert checks["handshake"]["status"] == "fail"
    assert checks["handshake"]["fix"] == "accepts TCP but never answers the upgrade: a proxy or firewall is holding it"
    # Two 1 s waits (health, handshake) plus process start-up.
    assert elapsed < 2 + 3, elapsed


async def test_scheme_check_flags_mixed_content_and_plain_http():
    """https pages cannot use a remote ws:// socket; plain http off loopback is a warning."""
    cases = [
        ("https://chat.example.com", "ws://chat.example.com/ws?v=1", "fail", "mixed content"),
        ("http://chat.example.com", None, "warn", "use https in production"),
        ("http://127.0.0.1:8000", None, "pass", None),
        ("https://chat.example.com", None, "pass", None),
    ]
    for url, socket_url, status, words in cases:
        target, _ = parse_target(url, None, socket_url, None, 1.0)
        async with Probe(target) as probe:
            check = await probe.check_scheme()
        assert check.status == status, (url, check)
        assert words is None or words in f"{check.detail} {check.fix}"


def test_unparseable_url_fails_url_check_and_skips_the_rest():
    """A URL that is not http(s) fails the url check; nothing touches the network; exit 1."""
    result = CliRunner().invoke(doctor, ["ftp://chat.example.com", "--json"])
    assert result.exit_code == 1
    checks = json.loads(result.output)["checks"]
    assert checks[0]["name"] == "url" and checks[0]["status"] == "fail"
    assert {check["status"] for check in checks[1:]} == {"skip"}


@pytest.mark.parametrize("args", [[], ["http://x", "--origin", "shop.example.com"], ["http://x", "--timeout", "0"],
                                  ["http://x", "--idle", "-1"]])
def test_bad_usage_exits_2(args):
    """Missing URL, a malformed --origin or a non-positive duration is a usage error (exit 2)."""
    assert CliRunner().invoke(doctor, args).exit_code == 2
