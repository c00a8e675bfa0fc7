"""``chat-widget doctor`` against the real server (a subprocess on loopback) and deliberately broken paths."""

import asyncio
import json
import socket
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from server.doctor import Probe, doctor, parse_target
from tcp_proxy import IdleCuttingProxy

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
    """A healthy server passes every check, exits 0, and both output forms say so."""
    (code, text), (json_code, report, checks) = await asyncio.gather(
        run_doctor(server.url), run_doctor_json(server.url))
    assert code == 0 and json_code == 0
    assert report["ok"] is True and report["url"] == server.url
    assert list(checks) == ["url", "scheme", "dns", "tcp", "health", "cors", "origin", "handshake", "welcome", "ping"]
    assert set(statuses(checks).values()) == {"pass"}, checks
    assert all(check["fix"] is None for check in checks.values())
    assert "PASS  health     200 application/health+json, status pass" in text
    assert text.rstrip().endswith("ok: 10 pass")


async def test_server_down_fails_tcp_and_skips_the_rest():
    """Nothing listening: tcp fails with a fix, everything after it is skipped, exit 1."""
    code, report, checks = await run_doctor_json(f"http://127.0.0.1:{unused_port()}")
    assert code == 1 and report["ok"] is False
    assert checks["tcp"]["status"] == "fail" and "refused" in checks["tcp"]["detail"]
    assert "start the server" in checks["tcp"]["fix"]
    for name in ("health", "cors", "origin", "handshake", "welcome", "ping"):
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
    assert checks["welcome"]["status"] == checks["ping"]["status"] == "skip"


async def test_allowed_cross_origin_passes_cors(shop_server):
    """The allowed site's origin gets exact CORS headers on preflight and GET, and the socket works."""
    code, _, checks = await run_doctor_json(shop_server.url, "--origin", SHOP)
    assert code == 0, checks
    assert checks["cors"] == {"name": "cors", "status": "pass", "detail": f"preflight and GET allow {SHOP}", "fix": None}
    assert set(statuses(checks).values()) == {"pass"}


async def test_wrong_socket_path_is_explained(server):
    """A socket URL that is not the /ws endpoint fails the handshake with the path explanation."""
    code, _, checks = await run_doctor_json(server.url, "--socket-url", f"ws://127.0.0.1:{server.port}/nope")
    assert code == 1
    assert checks["handshake"]["status"] == "fail"
    assert checks["handshake"]["fix"].startswith("wrong socket path or not a WebSocket endpoint")
    assert checks["health"]["status"] == "pass"  # the HTTP side is fine; only the socket URL is wrong


async def test_proxy_cutting_idle_sockets_fails_idle_check(server):
    """Through a proxy that cuts sockets silent for 1 s, a 2 s idle socket dies and the fix names the timeout."""
    async with IdleCuttingProxy(server.port, idle=1.0) as proxy:
        code, _, checks = await run_doctor_json(f"http://127.0.0.1:{proxy.port}", "--idle", "2")
    assert code == 1
    assert checks["ping"]["status"] == "pass"
    assert checks["idle"]["status"] == "fail", checks["idle"]
    assert "closes idle sockets after < 2 s" in checks["idle"]["fix"]


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
