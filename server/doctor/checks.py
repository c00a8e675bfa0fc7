"""The doctor's checks: ``Probe`` walks the path a visitor's browser takes, one ``Check`` per step."""

import asyncio
import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidMessage, InvalidStatus

from protocol import close, frames

from ..transport.origins import DEFAULT_PORTS, format_origin, parse_origin

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
SLOW_PING_MS = 500
HOLD_S = 3.0              # how long the hold check keeps the socket open (a cut after this goes unseen)
HOLD_PING_EVERY_S = 0.5
SERVER_PING_INTERVAL_S = 20  # uvicorn_config in cli.py
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
HEALTH_JSON = "application/health+json"

# Each check runs only when the one it depends on neither failed nor was skipped.
DEPENDS_ON = {
    "scheme": "url", "dns": "url", "tcp": "dns", "health": "tcp", "cors": "health", "origin": "health",
    "embed": "origin", "fallback": "origin", "handshake": "tcp", "welcome": "handshake", "ping": "welcome", "hold": "ping", "idle": "hold",
}

IDLE_FIX = ("something between you and the server closes idle sockets after < {idle:g} s (nginx "
            f"proxy_read_timeout defaults to 60 s): raise it above the server's {SERVER_PING_INTERVAL_S} s ping interval")
PATH_FIX = "wrong socket path or not a WebSocket endpoint: check --socket-url (the server's socket is /ws?v=1)"
UPGRADE_FIX = ("a proxy in front of the server does not forward the WebSocket upgrade, so the server got a plain "
               "GET: in nginx's location for /ws add proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; "
               "proxy_set_header Connection \"upgrade\"; (other proxies: enable WebSocket support)")
HANDSHAKE_FIXES = {
    403: "origin not allowed: add it with --allow-origin {origin}",
    404: PATH_FIX,
    400: PATH_FIX,  # an upgrade to a path without a socket; see UPGRADE_REFUSED
    503: "server full or restarting: check /healthz and the server log, then retry",
}
# 400 answers both an upgrade to a path without a socket and a plain GET of the socket route (which a
# proxy that drops the Upgrade header turns the upgrade into); 426 is some proxies' word for the
# latter. A plain GET of the socket URL tells them apart: answered alike, the upgrade never arrived.
UPGRADE_REFUSED = (400, 426)
HANDSHAKE_TIMEOUT_FIX = "accepts TCP but never answers the upgrade: a proxy or firewall is holding it"
WITHHELD = ("the WebSocket opened but no frame came back within {timeout:g} s: a proxy on the path is withholding "
            "the server's frames (buffering proxy or antivirus); the widget will fall back to HTTP")
WITHHELD_FIX = ("exempt the chat's host from the proxy's or antivirus's web scanning (HTTPS inspection), or have it "
                "pass WebSockets through unbuffered; if nothing sits between you and the server, check the server log")
CUT = "the connection was closed {seconds:.1f} s after it opened: a proxy on the path cuts live connections"
CUT_FIX = ("exempt the chat's host from the proxy, antivirus or firewall that ends WebSocket connections (or raise "
           "its connection time limit); if nothing sits in between, check the server log: a crash ends sockets too")


POLL_FIX = "a proxy must pass POST and GET on /poll to the chat server, unchanged, and may hold a request up to 25 s"
NO_FALLBACK_FIX = ("update the chat server, or route /poll to it through the proxy: without the fallback, visitors "
                   "behind proxies that break WebSockets cannot chat")
CLOSE_FIXES = {
    close.UNSUPPORTED_VERSION: "the server speaks another protocol version: update the server or this tool",
    close.TRY_LATER: "the server is at its connection limit (max_connections): retry shortly, or check /healthz",
    close.RESTART: "the server is restarting: retry shortly",
}
FALLBACK_OFF_FIX = ("visitors behind proxies that break WebSockets cannot chat at all: set --http-fallback auto "
                    "(the default) unless WebSockets are known to pass everywhere your visitors are")


@dataclass
class Check:
    name: str
    status: str
    detail: str
    fix: str | None = None
    # The widget's failure class this finding explains (protocol.close), e.g. close.INTERFERENCE.
    failure: str | None = None
    # Whether checks depending on this one must be skipped; by default a failure blocks them, but a
    # check can fail and still leave its dependents worth running (health answered, with status fail).
    blocks: bool | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.blocks is None:
            self.blocks = self.status in (FAIL, SKIP)

    def as_dict(self):
        return {"name": self.name, "status": self.status, "detail": self.detail, "fix": self.fix,
                "class": self.failure}


@dataclass
class Target:
    """What to diagnose, derived from the command line once the URL has parsed."""

    url: str            # the server's base URL, without a trailing slash
    host: str
    port: int
    own_origin: str     # the server URL's origin
    origin: str         # the page origin the widget runs on
    socket_url: str
    timeout: float
    idle: float | None


def parse_target(url, origin, socket_url, idle, timeout):
    """Return ``(Target or None, the url check)``."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return None, _bad_url(f"{url!r} does not parse: {error}")
    if parts.scheme not in ("http", "https"):
        return None, _bad_url(f"{url!r}: the scheme must be http or https")
    if not parts.hostname:
        return None, _bad_url(f"{url!r}: the host is missing")
    if parts.query or parts.fragment:
        return None, _bad_url(f"{url!r}: a base URL has no query or fragment")
    own_origin = format_origin(parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme])
    path = parts.path.rstrip("/")
    socket_scheme = "wss" if parts.scheme == "https" else "ws"
    socket_url = socket_url or f"{socket_scheme}{own_origin[len(parts.scheme):]}{path}/ws?v=1"
    socket_parts = urlsplit(socket_url)
    if socket_parts.scheme not in ("ws", "wss") or not socket_parts.hostname:
        return None, _bad_url(f"socket URL {socket_url!r} must be ws://host... or wss://host...")
    target = Target(url=own_origin + path, host=parts.hostname, port=port or DEFAULT_PORTS[parts.scheme],
                    own_origin=own_origin, origin=origin or own_origin, socket_url=socket_url,
                    timeout=timeout, idle=idle)
    return target, Check("url", PASS, f"{target.url}, socket {socket_url}, origin {target.origin}")


def _bad_url(detail):
    return Check("url", FAIL, detail, "give the server's base URL, like https://chat.example.com")


class Probe:
    """Runs the network checks in order; holds the HTTP client and the open chat socket between them."""

    def __init__(self, target):
        self.target = target
        # Direct connections (no proxy from the environment), so every check tests the same path.
        self.http = httpx.AsyncClient(timeout=target.timeout, trust_env=False)
        self.socket = None
        self.opened_at = None  # monotonic time the handshake completed

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        if self.socket is not None:
            await self.socket.close()
        await self.http.aclose()

    async def run(self, done):
        """Run every check after ``done`` (the url check), skipping those whose dependency blocks."""
        results = {check.name: check for check in done}
        for name in check_names(self.target.idle)[1:]:
            dependency = results[DEPENDS_ON[name]]
            if dependency.blocks:
                results[name] = Check(name, SKIP, f"skipped: {dependency.name} did not pass")
            else:
                results[name] = await getattr(self, f"check_{name}")()
        return list(results.values())

    async def check_scheme(self):
        target = self.target
        page_is_https = target.url.startswith("https:") or target.origin.startswith("https:")
        socket_parts = urlsplit(target.socket_url)
        if page_is_https and socket_parts.scheme == "ws":
            # Browsers count loopback as secure, so ws://localhost is not blocked as mixed content.
            if socket_parts.hostname in LOOPBACK_HOSTS:
                return Check("scheme", PASS, "https page, ws:// to a loopback host (allowed; development only)")
            return Check("scheme", FAIL, "mixed content: browsers block ws:// from https pages",
                         "serve the socket over TLS and use a wss:// socket URL")
        if target.url.startswith("https:"):
            return Check("scheme", PASS, f"https server, {socket_parts.scheme}:// socket")
        if target.host in LOOPBACK_HOSTS:
            return Check("scheme", PASS, "http on a loopback host (fine for development)")
        return Check("scheme", WARN, "plain http: traffic is readable and proxies may mangle the upgrade",
                     "use https in production (the socket then uses wss://)")

    async def check_dns(self):
        target = self.target
        try:
            async with asyncio.timeout(target.timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
        except TimeoutError:
            return Check("dns", FAIL, f"no DNS answer for {target.host} within {target.timeout:g} s",
                         "check this machine's resolver and network")
        except socket.gaierror as error:
            return Check("dns", FAIL, f"{target.host} does not resolve: {error.strerror}",
                         "check the host name; its DNS A/AAAA records must point at the server")
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        return Check("dns", PASS, f"{target.host} -> {', '.join(addresses[:4])}")

    async def check_tcp(self):
        target = self.target
        where = f"{target.host}:{target.port}"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(target.timeout):
                _, writer = await asyncio.open_connection(target.host, target.port)
        except TimeoutError:
            return Check("tcp", FAIL, f"no TCP answer from {where} within {target.timeout:g} s",
                         "a firewall drops the connection or the host is down: open the port or check the host")
        except ConnectionRefusedError:
            return Check("tcp", FAIL, f"connection refused at {where}",
                         "nothing listens there: start the server (chat-widget serve) or fix the port in the URL")
        except OSError as error:
            return Check("tcp", FAIL, f"cannot connect to {where}: {error}", "check the host, port and network")
        writer.close()
        return Check("tcp", PASS, f"connected to {where} in {_ms_since(started)} ms")

    async def check_health(self):
        try:
            response = await self.http.get(self.target.url + "/healthz")
        except httpx.HTTPError as error:
            return Check("health", FAIL, f"GET /healthz: {self._describe(error)}", _http_error_fix(error))
        content_type = response.headers.get("content-type", "").split(";")[0]
        summary = f"{response.status_code} {content_type or '(no content type)'}"
        try:
            body = response.json()
            overall, checks = body["status"], body.get("checks", {})
        except (ValueError, KeyError, TypeError):
            # It answered HTTP, so the other HTTP checks may still tell something.
            return Check("health", FAIL, f"{summary}: not a health response", "this URL does not reach the chat "
                         "server (/healthz is not health JSON): check the URL or the proxy's routing", blocks=False)
        detail = f"{summary}, status {overall}"
        if checks:
            detail += ": " + "; ".join(_health_entry(name, entry) for name, entries in checks.items() for entry in entries)
        problems = "; ".join(entry["output"] for entries in checks.values() for entry in entries
                             if entry.get("status") != PASS and entry.get("output"))
        if overall == FAIL or response.status_code != 200:
            return Check("health", FAIL, detail, problems or "the server reports itself unhealthy: see its log",
                         blocks=False)
        if overall == WARN:
            return Check("health", WARN, detail, problems or "the server reports a warning: see its log")
        if content_type != HEALTH_JSON:
            return Check("health", WARN, detail, f"expected {HEALTH_JSON}: is a proxy rewriting responses, "
                         "or is this another service's /healthz?")
        return Check("health", PASS, detail)

    async def check_cors(self):
        target = self.target
        if parse_origin(target.origin) == parse_origin(target.own_origin):
            return Check("cors", PASS, f"origin {target.origin} is the server's own: CORS not needed")
        try:
            preflight = await self.http.options(target.url + "/healthz", headers={
                "Origin": target.origin, "Access-Control-Request-Method": "GET"})
            simple = await self.http.get(target.url + "/healthz", headers={"Origin": target.origin})
        except httpx.HTTPError as error:
            return Check("cors", FAIL, self._describe(error), _http_error_fix(error))
        failures, warnings = [], []
        for label, response in (("preflight", preflight), ("GET", simple)):
            _cors_problems(label, response, target.origin, failures, warnings)
        if failures:
            return Check("cors", FAIL, "; ".join(failures), f"add it with --allow-origin {target.origin}; if it is "
                         "already allowed, a proxy is stripping the Access-Control-* headers")
        if warnings:
            return Check("cors", WARN, "; ".join(warnings),
                         "send Vary: Origin with per-origin CORS headers so caches keep them apart")
        return Check("cors", PASS, f"preflight and GET allow {target.origin}")

    async def check_origin(self):
        target = self.target
        try:
            response = await self.http.get(target.url + "/ws-check", headers={"Origin": target.origin})
        except httpx.HTTPError as error:
            return Check("origin", FAIL, f"GET /ws-check: {self._describe(error)}", _http_error_fix(error))
        if response.status_code == 404:
            return Check("origin", WARN, "GET /ws-check: 404", "the widget asks /ws-check why a socket was "
                         "refused: update the server, or route /ws-check through the proxy")
        try:
            body = response.json()
            allowed, reason = body["allowed"], body.get("reason")
        except (ValueError, KeyError, TypeError):
            return Check("origin", FAIL, f"GET /ws-check: {response.status_code}, not the chat server's answer",
                         "check the URL or the proxy's routing")
        if not allowed:
            return Check("origin", FAIL, f"{target.origin} not allowed: {reason}",
                         f"add it with --allow-origin {target.origin}")
        if not body.get("accepting", True):
            return Check("origin", WARN, f"{target.origin} allowed, but the server is not accepting new sockets",
                         "the server is draining or full: retry shortly, or check /healthz")
        return Check("origin", PASS, f"{target.origin} allowed ({reason})")

    async def check_embed(self):
        """The one tag's parts: /embed.js is served as JavaScript, and the widget's frame may be framed by
        the origin (its CSP's frame-ancestors): without either, the site shows no working chat."""
        target = self.target
        try:
            script = await self.http.get(target.url + "/embed.js")
            frame = await self.http.get(target.url + "/embed/frame")
        except httpx.HTTPError as error:
            return Check("embed", FAIL, f"GET /embed.js or /embed/frame: {self._describe(error)}", _http_error_fix(error))
        kind = script.headers.get("Content-Type", "")
        if script.status_code != 200 or "javascript" not in kind:
            return Check("embed", FAIL, f"GET /embed.js: {script.status_code} {kind or 'no Content-Type'}",
                         "route /embed.js to the chat server unchanged: browsers run it only as JavaScript")
        if frame.status_code != 200:
            return Check("embed", FAIL, f"GET /embed/frame: {frame.status_code}", "route /embed/ to the chat server")
        ancestors = _directive(frame.headers.get("Content-Security-Policy", ""), "frame-ancestors")
        if ancestors is not None and not _origin_listed(target.origin, ancestors, target.url):
            return Check("embed", FAIL, f"the widget's frame may not be framed by {target.origin} "
                         f"(frame-ancestors {' '.join(ancestors)})", f"add it with --allow-origin {target.origin}; "
                         "a proxy must not replace the frame's Content-Security-Policy or add X-Frame-Options")
        if frame.headers.get("X-Frame-Options"):
            # Browsers ignore it when frame-ancestors is there; without it, it forbids framing by other sites.
            status = WARN if ancestors is not None else FAIL
            return Check("embed", status, f"the widget's frame carries X-Frame-Options: {frame.headers['X-Frame-Options']}"
                         + (" (ignored by browsers that read the frame's frame-ancestors)" if ancestors is not None else ""),
                         "remove X-Frame-Options for /embed/ at the proxy: it forbids framing by other sites")
        return Check("embed", PASS, f"/embed.js is JavaScript and {target.origin} may frame the widget")

    async def check_fallback(self):
        """The HTTP fallback (docs/protocol.md): open a channel, say hello, get the welcome by long-poll, and
        close the channel again, however that went."""
        parts = urlsplit(self.target.socket_url)
        base = parts._replace(scheme="https" if parts.scheme == "wss" else "http", path="/poll", query="").geturl()
        headers = {"Origin": self.target.origin}
        started = time.perf_counter()
        channel = None
        try:
            opened = await self.http.post(base, params={"v": frames.VERSION}, headers=headers)
            if opened.status_code == 404:
                if "fallback_disabled" in opened.text:
                    return Check("fallback", WARN, "the HTTP fallback is off (/poll answers 404)", FALLBACK_OFF_FIX)
                return Check("fallback", WARN, f"POST {base} answered 404: the server has no HTTP fallback",
                             NO_FALLBACK_FIX)
            if opened.status_code != 200:
                return Check("fallback", FAIL, f"POST {base} answered HTTP {opened.status_code}: {opened.text[:80]}",
                             POLL_FIX)
            status, answer = 200, opened.json()  # a refusal (full, another version) is a close, no channel
            if "close" not in answer:
                channel = f"{base}/{answer['channel']}"
                await self.http.post(channel, content=json.dumps(frames.hello(None, 0)), headers={
                    **headers, "Content-Type": "text/plain;charset=UTF-8"})
                polled = await self.http.get(channel, params={"from": 0}, headers=headers)
                status, answer = polled.status_code, polled.json() if polled.status_code == 200 else {}
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
            return Check("fallback", FAIL, f"{base}: {self._describe(error)}", POLL_FIX)
        finally:
            if channel is not None:
                await self._close_channel(channel, headers)
        if isinstance(answer.get("close"), dict):
            code, reason = answer["close"].get("code"), answer["close"].get("reason")
            return Check("fallback", FAIL, f"the server closed the fallback channel with {code}: {str(reason)[:80]}",
                         _close_fix(code))
        if ((answer.get("frames") or [{}])[0]).get("type") != "welcome":
            return Check("fallback", FAIL, f"no welcome by long-poll (HTTP {status})", POLL_FIX)
        return Check("fallback", PASS, f"welcome over HTTP long-polling ({base}) in {_ms_since(started)} ms")

    async def _close_channel(self, channel, headers):
        """POST /close, so the doctor's channel does not wait out its expiry on the server."""
        try:
            await self.http.post(channel + "/close", headers=headers)
        except httpx.HTTPError:
            pass  # it expires on its own

    async def check_handshake(self):
        target = self.target
        started = time.perf_counter()
        try:
            # No keepalive pings of our own: browsers send none, and --idle must be truly silent.
            self.socket = await connect(target.socket_url, origin=target.origin, open_timeout=target.timeout,
                                        close_timeout=target.timeout, ping_interval=None, proxy=None)
        except InvalidStatus as error:
            status = error.response.status_code
            # The server refuses with a one-line text/plain reason; other bodies (HTML pages) say little.
            plain = error.response.headers.get("Content-Type", "").startswith("text/plain")
            body = error.response.body.decode("utf-8", "replace").strip().splitlines() if plain else []
            detail = f"HTTP {status}" + (f" {body[0][:80]}" if body else "") + f" instead of 101 from {target.socket_url}"
            if server := error.response.headers.get("Server"):
                detail += f" (answered by {server[:40]})"  # a proxy's name here says who is in the way
            if status in UPGRADE_REFUSED and await self._answers_plain_get_alike(status):
                return Check("handshake", FAIL, detail + ", as to a plain GET: the upgrade did not reach the server",
                             UPGRADE_FIX, failure=close.INTERFERENCE)
            fix = HANDSHAKE_FIXES.get(status, "the server should answer 101 Switching Protocols: check --socket-url "
                                      "and any proxy in front of the server")
            return Check("handshake", FAIL, detail, fix.format(origin=target.origin))
        except TimeoutError:
            return Check("handshake", FAIL, f"no answer to the upgrade within {target.timeout:g} s",
                         HANDSHAKE_TIMEOUT_FIX)
        except InvalidMessage as error:
            return Check("handshake", FAIL, f"no HTTP answer to the upgrade: {error}",
                         "the connection closed mid-handshake: a TLS port reached with ws:// (use wss://), or a proxy "
                         "dropping upgrades")
        except InvalidHandshake as error:
            return Check("handshake", FAIL, f"not a WebSocket upgrade: {error}",
                         "a proxy must forward the Upgrade and Connection headers")
        except ssl.SSLError as error:
            return Check("handshake", FAIL, f"TLS: {error}", "the certificate must be valid for the socket's host")
        except OSError as error:
            return Check("handshake", FAIL, f"cannot connect to {target.socket_url}: {error}",
                         "check the host and port of --socket-url")
        self.opened_at = time.monotonic()
        return Check("handshake", PASS, f"101 Switching Protocols in {_ms_since(started)} ms")

    async def _answers_plain_get_alike(self, status):
        """Whether a plain GET of the socket URL gets ``status`` too (what a refused upgrade got)."""
        parts = urlsplit(self.target.socket_url)
        url = parts._replace(scheme="https" if parts.scheme == "wss" else "http").geturl()
        try:
            response = await self.http.get(url, headers={"Origin": self.target.origin})
        except httpx.HTTPError:
            return False
        return response.status_code == status

    async def check_welcome(self):
        try:
            async with asyncio.timeout(self.target.timeout):
                # A fresh session: the doctor's own conversation, never a visitor's.
                await self.socket.send(json.dumps(frames.hello(None, 0)))
                frame = _json_frame(await self.socket.recv())
        except TimeoutError:
            return Check("welcome", FAIL, WITHHELD.format(timeout=self.target.timeout), WITHHELD_FIX,
                         failure=close.INTERFERENCE)
        except ConnectionClosed as error:
            return self._closed("welcome", error.rcvd)
        if frame.get("type") != "welcome":
            return Check("welcome", FAIL, f"first frame is {str(frame.get('type'))[:40]!r}, not a welcome",
                         "this socket URL is not the chat server's /ws endpoint")
        if frame.get("v") != frames.VERSION:
            return Check("welcome", FAIL, f"welcome for protocol v{frame.get('v')}, expected v{frames.VERSION}",
                         "update the server or this tool so they speak the same protocol version")
        return Check("welcome", PASS, f"welcome v{frames.VERSION}")

    async def check_ping(self):
        try:
            rtt = await self._round_trip()
        except TimeoutError:
            return Check("ping", FAIL, f"no pong within {self.target.timeout:g} s",
                         "the server does not answer frames: check its log and whether a proxy buffers the socket")
        except ConnectionClosed as error:
            return self._closed("ping", error.rcvd)
        if rtt > SLOW_PING_MS:
            return Check("ping", WARN, f"pong in {rtt} ms (over {SLOW_PING_MS} ms)",
                         "a slow path or a loaded server: check the server's CPU and the network in between")
        return Check("ping", PASS, f"pong in {rtt} ms")

    async def check_hold(self):
        """Keep the socket open HOLD_S seconds, pinging: finds proxies that cut live connections early."""
        deadline = time.monotonic() + HOLD_S
        rtts = []
        try:
            while True:
                rtts.append(await self._round_trip())
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    # wait_closed ends the pause early when the path cuts the socket meanwhile.
                    async with asyncio.timeout(min(HOLD_PING_EVERY_S, left)):
                        await self.socket.wait_closed()
                except TimeoutError:
                    continue
                return self._closed("hold", self.socket.protocol.close_rcvd)
        except TimeoutError:
            return Check("hold", FAIL, f"no pong within {self.target.timeout:g} s after {len(rtts)} answered",
                         "the path stopped passing the server's frames: a proxy or the server stalled; check both")
        except ConnectionClosed as error:
            return self._closed("hold", error.rcvd)
        return Check("hold", PASS, f"open {HOLD_S:g} s, {len(rtts)} pongs, slowest in {max(rtts)} ms")

    async def check_idle(self):
        idle = self.target.idle
        fix = IDLE_FIX.format(idle=idle)
        started = time.perf_counter()
        try:
            # Silence on our side; wait_closed returns early if the path cuts the socket meanwhile.
            async with asyncio.timeout(idle):
                await self.socket.wait_closed()
        except TimeoutError:
            pass
        else:
            return Check("idle", FAIL, f"socket closed after {time.perf_counter() - started:.1f} s without traffic", fix)
        try:
            rtt = await self._round_trip()
        except (TimeoutError, ConnectionClosed):
            return Check("idle", FAIL, f"no pong after {idle:g} s without traffic", fix)
        return Check("idle", PASS, f"open after {idle:g} s without traffic, pong in {rtt} ms")

    async def _round_trip(self):
        """Send a protocol ping and return the milliseconds until its pong."""
        stamp = round(time.time() * 1000)
        started = time.perf_counter()
        await self.socket.send(json.dumps(frames.ping(stamp)))
        async with asyncio.timeout(self.target.timeout):
            while True:
                frame = _json_frame(await self.socket.recv())
                if frame.get("type") == "pong" and frame.get("t") == stamp:
                    return _ms_since(started)

    def _closed(self, name, rcvd):
        """The check ``name`` failed because the socket closed; ``rcvd`` is the close frame, if one came."""
        if rcvd is None:  # the TCP connection ended without a close frame: cut on the way (or a crash)
            seconds = time.monotonic() - self.opened_at
            return Check(name, FAIL, CUT.format(seconds=seconds), CUT_FIX, failure=close.INTERFERENCE)
        reason = f" {rcvd.reason!r}" if rcvd.reason else ""
        return Check(name, FAIL, f"socket closed (code {rcvd.code}{reason})", _close_fix(rcvd.code))

    def _describe(self, error):
        if isinstance(error, httpx.TimeoutException):
            return f"no answer within {self.target.timeout:g} s"
        return f"{type(error).__name__}: {error}"


def _close_fix(code):
    return CLOSE_FIXES.get(code, "the server or a proxy closed the connection: check the server log")


def _http_error_fix(error):
    if isinstance(error, httpx.TimeoutException):
        return "the server accepts TCP but does not answer HTTP: is it overloaded, or is something else on this port?"
    if "CERTIFICATE" in str(error).upper():
        return "the TLS certificate must be valid for this host"
    if "WRONG_VERSION_NUMBER" in str(error).upper():
        return "nothing speaks TLS on this port: use http://, or put TLS in front of the server"
    return "check the URL and that the chat server (not another service) answers on it"


def _cors_problems(label, response, origin, failures, warnings):
    allowed = response.headers.get("access-control-allow-origin")
    credentials = response.headers.get("access-control-allow-credentials", "").lower() == "true"
    if allowed is None:
        failures.append(f"{label}: no Access-Control-Allow-Origin for {origin}")
    elif allowed == "*" and credentials:
        failures.append(f"{label}: '*' with credentials (browsers reject it)")
    elif allowed not in (origin, "*"):
        failures.append(f"{label}: Access-Control-Allow-Origin is {allowed!r}, not {origin}")
    elif allowed == origin and "origin" not in response.headers.get("vary", "").lower():
        warnings.append(f"{label}: no Vary: Origin")
    methods = response.headers.get("access-control-allow-methods")
    if label == "preflight" and methods is not None and "GET" not in methods.upper():
        failures.append(f"preflight: GET not in Access-Control-Allow-Methods ({methods})")


def _health_entry(name, entry):
    text = f"{name} {entry.get('status')}"
    return f"{text} ({entry['output']})" if entry.get("output") else text


def _json_frame(data):
    try:
        frame = json.loads(data)
    except (TypeError, ValueError):
        return {"type": "(not JSON)"}
    return frame if isinstance(frame, dict) else {"type": "(not an object)"}


def _ms_since(started):
    return round((time.perf_counter() - started) * 1000)


def check_names(idle):
    """Every check's name in running order; idle only when asked for."""
    return ["url"] + [name for name in DEPENDS_ON if name != "idle" or idle]


def _directive(policy, name):
    """The sources of one CSP directive, or None when the policy does not have it."""
    for part in policy.split(";"):
        words = part.split()
        if words and words[0].lower() == name:
            return words[1:]
    return None


def _origin_listed(origin, sources, server_url):
    """Whether a frame-ancestors source list admits ``origin`` ('self' is the server's own origin)."""
    for source in sources:
        if source == "*" or source == origin or (source == "'self'" and origin == _origin_of(server_url)):
            return True
        if "://*." in source:
            scheme, suffix = source.split("://*.", 1)
            if origin.startswith(scheme + "://") and origin.split("://", 1)[1].endswith("." + suffix):
                return True
    return False


def _origin_of(url):
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
