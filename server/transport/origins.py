"""Origin allowlist: exact scheme/host/port matching, with an optional whole-label subdomain wildcard.

Browsers do not apply CORS to WebSockets, so the server must check the handshake's Origin itself.
quart-cors's websocket check matches regexes by prefix (``https://a.example.com.evil.net`` passes a
rule for ``https://a.example.com``); this module compares parsed origins instead.
"""

import re
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


class OriginError(ValueError):
    """A configured origin is not a valid origin."""


def parse_origin(text):
    """Parse ``scheme://host[:port]`` into a normalised ``(scheme, host, port)``.

    Raises OriginError for anything that is not exactly an origin (paths, queries, credentials, ...).
    """
    if not isinstance(text, str) or not text:
        raise OriginError("an origin is scheme://host[:port], got an empty value")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as error:
        raise OriginError(f"{text!r} is not a valid origin: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise OriginError(f"{text!r} is not a valid origin: the scheme must be http or https")
    if parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("",):
        raise OriginError(
            f"{text!r} is not a valid origin: write only scheme://host[:port], with no path, "
            "query or trailing slash"
        )
    host = (parts.hostname or "").lower()
    if not host:
        raise OriginError(f"{text!r} is not a valid origin: the host is missing")
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme]


def format_origin(scheme, host, port):
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}" if DEFAULT_PORTS[scheme] == port else f"{scheme}://{host}:{port}"


class OriginRule:
    """One allowed origin; ``https://*.example.com`` allows every subdomain (not the apex)."""

    def __init__(self, text):
        scheme, host, port = parse_origin(text.replace("://*.", "://wildcard.", 1))
        self.text = text
        self.scheme = scheme
        self.port = port
        if "://*." in text:
            self.host = None
            self.suffix = "." + host[len("wildcard."):]
        else:
            if "*" in host:
                raise OriginError(f"{text!r}: a wildcard may only be the whole first label, as in https://*.example.com")
            self.host = host
            self.suffix = None

    def matches(self, scheme, host, port):
        if scheme != self.scheme or port != self.port:
            return False
        if self.host is not None:
            return host == self.host
        # Whole-label suffix match: "a.example.com" passes "*.example.com",
        # "a.example.com.evil.net" and "badexample.com" do not.
        return host.endswith(self.suffix) and len(host) > len(self.suffix)

    def cors_pattern(self):
        """An anchored regex for quart-cors that accepts exactly the origins this rule matches."""
        default = DEFAULT_PORTS[self.scheme] == self.port
        port = f"(:{self.port})?" if default else f":{self.port}"
        if self.host is not None:
            host = re.escape(self.host)
        else:
            host = r"[a-z0-9-]+(\.[a-z0-9-]+)*" + re.escape(self.suffix)
        return re.compile(f"{self.scheme}://{host}{port}\\Z")

    def __repr__(self):
        return f"OriginRule({self.text!r})"


class OriginPolicy:
    """Decides whether a request's Origin header may use the chat.

    The server's own origin (the Origin names the host the request was sent to, its Host header) is
    always allowed: the widget runs in a frame served by this server, so its socket's Origin is this
    server's. The rules name the *sites* that may embed the widget and talk to the server directly.
    """

    def __init__(self, origins=(), allow_missing=False):
        self.rules = [OriginRule(text) for text in origins]
        self.allow_missing = allow_missing

    @property
    def same_origin_only(self):
        return not self.rules

    def check(self, origin, host_header=None, scheme="http"):
        """Return ``(allowed, reason)``; reason explains a refusal in words for the log."""
        if origin is None or origin == "":
            if self.allow_missing:
                return True, "no Origin header (allowed by setting)"
            return False, "no Origin header (non-browser clients need allow_missing_origin)"
        if origin == "null":
            return False, "opaque origin 'null' (sandboxed frame or file: page)"
        try:
            parsed = parse_origin(origin)
        except OriginError:
            return False, f"malformed Origin {origin!r}"
        # The chat server's own pages (the widget's frame, the demo) may always use it.
        if host_header and _same_host(parsed, scheme, host_header):
            return True, "same origin"
        if self.same_origin_only:
            return False, f"origin {origin} is not this server's own origin and no allowed origins are configured"
        for rule in self.rules:
            if rule.matches(*parsed):
                return True, f"matches {rule.text}"
        return False, f"origin {origin} is not in the allowed origins"

    def cors_origin(self, origin, host_header=None, scheme="http"):
        """The value for Access-Control-Allow-Origin, or None when no CORS headers may be sent."""
        allowed, _ = self.check(origin, host_header, scheme)
        return origin if allowed and origin not in (None, "", "null") else None


def _same_host(parsed, scheme, host_header):
    """The Origin names the host the request was sent to. Behind a proxy that terminates TLS the app
    sees http for an https page, so a Host without a port matches on the host name alone; a Host with
    a port must match it too. Only this server's own pages live on its host and port."""
    origin_scheme, host, port = parsed
    own = _host_origin(scheme, host_header)
    if own is None or own[1] != host:
        return False
    explicit_port = host_header.rsplit("]", 1)[-1].count(":") == 1
    return port == own[2] if explicit_port else port == DEFAULT_PORTS[origin_scheme]


def _host_origin(scheme, host_header):
    http_scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    try:
        return parse_origin(f"{http_scheme}://{host_header}")
    except OriginError:
        return None
