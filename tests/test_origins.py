"""The origin policy's rule for the server's own pages: the widget's frame is served by the chat
server, so its socket's Origin is the server's; that must pass whatever ``--allow-origin`` lists,
including behind a proxy that terminates TLS (the app then sees http for an https page)."""

import pytest

from server.transport.origins import OriginPolicy

SITES = OriginPolicy(["https://shop.example.com"])


@pytest.mark.parametrize("origin, host, scheme, allowed", [
    ("http://127.0.0.1:8000", "127.0.0.1:8000", "ws", True),           # the frame, served directly
    ("https://chat.example.com", "chat.example.com", "ws", True),       # behind a TLS proxy: scheme differs
    ("https://chat.example.com", "chat.example.com", "wss", True),
    ("https://chat.example.com:8443", "chat.example.com:8443", "ws", True),
    ("https://chat.example.com:8443", "chat.example.com", "ws", False),  # another port of that host
    ("http://127.0.0.1:8001", "127.0.0.1:8000", "ws", False),
    ("https://chat.example.com.evil.net", "chat.example.com", "ws", False),
    ("https://evil.example.net", "chat.example.com", "ws", False),
    ("https://shop.example.com", "chat.example.com", "ws", True),        # the allowed site, by its rule
    ("null", "chat.example.com", "ws", False),
])
def test_the_servers_own_origin_is_always_allowed_and_nothing_else_by_it(origin, host, scheme, allowed):
    assert SITES.check(origin, host, scheme)[0] is allowed
