"""Request header limits: one rule for the socket's handshake and every HTTP route.

Browsers send a host's cookies with every request to it, the WebSocket handshake included, so a site
whose cookies grew large (three 3.9 KB cookies make a 12 KB ``Cookie`` line) must not lose its chat
while its pages still load. The rule: at most ``MAX_HEADER_BYTES`` of header lines, each counted as
sent, ``Name: value\\r\\n``, and at most ``MAX_HEADERS`` of them; beyond, HTTP 431. The app applies it
to the complete request (``chat_socket`` before the upgrade, ``install`` for HTTP routes), and
``/ws-check`` reports it for its own request instead of refusing, so a widget can learn why its
handshake failed. Uvicorn's parsers are set from the same numbers (``ws_protocol.py``): websockets'
to the rule itself, h11's incomplete-head buffer to a ceiling above it.

32 KiB: twice h11's default buffer (16 KiB, which held only for heads arriving in pieces), four times
nginx's and Apache's 8 KiB per line; a browser sends about 0.5 to 1 KB of headers without cookies.
"""

import logging

from quart import Response, current_app, request

log = logging.getLogger("chat_widget.headers")

MAX_HEADER_BYTES = 32 * 1024
MAX_HEADERS = 128


def header_bytes(headers):
    """Bytes of a request's header lines as the limit counts them: ``Name: value\\r\\n`` each.

    ``headers``: (name, value) pairs as in an ASGI scope (bytes), or as str.
    """
    return sum(len(name) + len(value) + 4 for name, value in headers)


def too_large(headers):
    """True when a request's headers break the limit (and the socket refuses the handshake with 431)."""
    return len(headers) > MAX_HEADERS or header_bytes(headers) > MAX_HEADER_BYTES


def refusal_text(headers):
    return (f"Request header fields too large: {header_bytes(headers)} bytes in {len(headers)} headers; "
            f"this server accepts {MAX_HEADER_BYTES} bytes in {MAX_HEADERS} (mostly cookies)\n")


def reports_instead(view):
    """Marks an HTTP view that answers requests over the limit (``/ws-check`` reports it)."""
    view.reports_header_size = True
    return view


def install(app):
    """HTTP routes answer 431 to requests over the limit, as the socket's handshake does."""

    @app.before_request
    async def refuse_large_headers():
        headers = request.scope["headers"]
        if not too_large(headers):  # nearly every request: nothing else to look up
            return None
        if getattr(current_app.view_functions.get(request.endpoint), "reports_header_size", False):
            return None
        log.warning("request refused status=431 path=%s header_bytes=%d headers=%d", request.path[:200],
                    header_bytes(headers), len(headers))
        return Response(refusal_text(headers), status=431, content_type="text/plain")
