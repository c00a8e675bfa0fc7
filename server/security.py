"""Security headers: a Content-Security-Policy for HTML documents, and a few hardening headers on every answer.

The policy is the minimum that PyScript + MicroPython or Pyodide need, found by removing one piece at
a time in real Chromium (docs/security.md says what broke without each; e2e/test_security.py checks
that no violation occurs). Inline ``<style>`` and executable inline ``<script>`` blocks of the page
templates are allowed by their sha256 hash, computed once at start from the template files, never from
a response, so nothing injected into a page could ever be hashed into the policy.
"""

import base64
import hashlib
import logging
import re
from urllib.parse import urlsplit

log = logging.getLogger("chat_widget.security")

# Templates whose inline blocks are hashed (relative to the project root).
TEMPLATES = ("index.html", "widget/frame.html")

_INLINE_STYLE = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.S | re.I)
_INLINE_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script\s*>", re.S | re.I)
_SCRIPT_TYPE = re.compile(r"""(?:^|\s)type\s*=\s*["']?([^"'\s>]+)""", re.I)
# Script types the browser executes (an absent type is JavaScript); others (application/json,
# mpy, py) are data to the browser, which CSP does not govern.
_EXECUTABLE_TYPES = {"", "module", "text/javascript", "application/javascript"}

# On every answer: a script, stylesheet or wasm sent with another type must not run as one.
HEADERS = {"X-Content-Type-Options": "nosniff"}
# With HTML documents only, like the policy: COOP governs top-level documents and nothing else, and the
# referrer policy of a script or stylesheet would only repeat the browsers' default (this same value).
# On the ten runtime and widget files of a first visit they were about 1 KB of nothing.
DOCUMENT_HEADERS = {
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def _hash(text):
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def inline_hashes(root):
    """``(style_hashes, script_hashes)`` of the inline blocks in the page templates under ``root``."""
    styles, scripts = [], []
    for name in TEMPLATES:
        path = root / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        for block in _INLINE_STYLE.findall(text):
            _add(styles, block, path)
        for attributes, block in _INLINE_SCRIPT.findall(text):
            if re.search(r"\bsrc\s*=", attributes, re.I):
                continue
            match = _SCRIPT_TYPE.search(attributes)
            if (match.group(1).lower() if match else "") in _EXECUTABLE_TYPES:
                _add(scripts, block, path)
    return styles, scripts


def _add(found, block, path):
    if "{{" in block or "{%" in block:
        # The rendered block differs from the template, so its hash would not match: keep inline
        # code static, and pass data in a <script type="application/json"> block instead.
        log.warning("inline block with template syntax in %s is not allowed by the CSP", path)
        return
    value = _hash(block)
    if value not in found:
        found.append(value)


def socket_sources(socket_url):
    """Sources for connect-src when the socket is served elsewhere (``--socket-url``): ws(s) and /ws-check."""
    if not socket_url:
        return []
    parts = urlsplit(socket_url)
    http = {"ws": "http", "wss": "https"}[parts.scheme]
    return [f"{parts.scheme}://{parts.netloc}", f"{http}://{parts.netloc}"]


def content_security_policy(policy, config=None, style_hashes=(), script_hashes=(), overrides=None):
    """The CSP header value. ``overrides`` ({directive: value, or None to drop it}) is for experiments.

    Each source below was found necessary in Chromium on both runtimes (docs/security.md):
    - script-src 'self': core.js, its chunks, micropython.mjs / pyodide.mjs, boot.js.
    - 'wasm-unsafe-eval': WebAssembly.instantiate of micropython.wasm / pyodide.asm.wasm.
    - 'unsafe-eval': PyScript 0.7.31's core compiles its worker hooks with Function() at start, even
      on the main thread; without it PyScript aborts before Python runs (neither runtime needs it).
    - style-src 'self' + hashes: widget.css and the demo page's inline <style>.
    - img-src data:: the demo page's empty favicon (<link rel="icon" href="data:,">).
    - connect-src 'self': fetches of the runtime, the widget's .py files and /ws-check, and the
      socket (CSP3 'self' covers ws:/wss: to the same host and port); plus --socket-url's host.
    - form-action 'none': the widget never submits a form natively (Python calls preventDefault);
      before Python runs, a click on Send would otherwise navigate to /?message=<the text>.
    - frame-ancestors: only the allowed sites (``--allow-origin``) and this server may frame the
      widget. (The demo page, which frames it, has the host page's policy: ``host_page_policy``.)
    """
    directives = {
        "default-src": ["'none'"],
        "script-src": ["'self'", "'unsafe-eval'", "'wasm-unsafe-eval'", *script_hashes],
        "style-src": ["'self'", *style_hashes],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'", *socket_sources(getattr(config, "socket_url", ""))],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'none'"],
        "frame-ancestors": ["'self'", *(rule.text for rule in policy.rules)],
    }
    for name, value in (overrides or {}).items():
        if value is None:
            directives.pop(name, None)
        else:
            directives[name] = value.split() if isinstance(value, str) else list(value)
    return "; ".join(" ".join([name, *values]) for name, values in directives.items())


def host_page_policy(style_hashes=()):
    """The demo page's policy: what a site embedding the widget needs (docs/embedding.md), and no
    more. No 'unsafe-eval' or 'unsafe-inline': the runtime runs in the widget's frame, under its own."""
    return "; ".join([
        "default-src 'none'", "script-src 'self'", "style-src 'self' " + " ".join(style_hashes),
        "img-src 'self' data:", "connect-src 'self'", "frame-src 'self'", "base-uri 'none'", "form-action 'none'",
        "frame-ancestors 'none'",
    ])


def install_security_headers(app, policy, overrides=None):
    """Add an ``after_request`` that sets ``HEADERS`` on every HTTP answer, and the CSP and
    ``DOCUMENT_HEADERS`` on HTML documents. A policy only governs the document it arrives with (and
    workers, which the widget does not use): on the runtime's scripts, wasm and the widget's files it
    would be 264 bytes each of nothing, about 2.4 KB of a first visit."""
    config = app.extensions.get("chat_config")
    styles, scripts = inline_hashes(config.root) if config is not None else ([], [])
    csp = content_security_policy(policy, config, styles, scripts, overrides)
    app.extensions["chat_csp"] = csp
    app.extensions["chat_host_csp"] = host_page_policy(styles)

    @app.after_request
    async def security_headers(response):
        document = response.mimetype == "text/html"
        if document:
            response.headers.setdefault("Content-Security-Policy", csp)
        for name, value in (HEADERS | DOCUMENT_HEADERS if document else HEADERS).items():
            response.headers.setdefault(name, value)
        return response

    return csp
