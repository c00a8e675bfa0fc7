"""Security headers (server/security.py) through Quart's test client: present everywhere, strict, and correct."""

import base64
import hashlib
import logging
import re

import pytest

from server.security import content_security_policy, host_page_policy, inline_hashes, install_security_headers

ORIGINS = ["https://shop.example.com", "https://*.example.org"]


@pytest.fixture
def secured(make_app):
    """Factory: an app with the security headers, whether or not create_app installs them already."""

    def make(**settings):
        app = make_app(**settings)
        if "chat_csp" not in app.extensions:
            install_security_headers(app, app.extensions["chat_origins"])
        return app

    return make


def directives(header):
    parsed = {}
    for part in header.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def sha256_source(text):
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


async def test_create_app_installs_security_headers(make_app):
    """create_app itself sends the CSP (fails until install_security_headers is wired into create_app)."""
    response = await make_app(allow_origins=ORIGINS).test_client().get("/")
    assert "Content-Security-Policy" in response.headers, "wire install_security_headers into create_app"


@pytest.mark.parametrize("path", ["/", "/embed/frame", "/embed.js", "/widget/widget.css", "/widget/shell/main.py",
                                  "/vendor/pyscript/core.js", "/healthz"])
async def test_every_answer_has_the_headers(secured, path):
    """The pages, the widget's files, the runtime files and the health route all carry nosniff; the
    policy, the referrer policy and COOP go with HTML documents only (they govern nothing else, and
    each costs bytes on every file of a first visit)."""
    response = await secured(allow_origins=ORIGINS).test_client().get(path)
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    document_only = ("Content-Security-Policy", "Referrer-Policy", "Cross-Origin-Opener-Policy")
    if path in ("/", "/embed/frame"):
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none';")
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    else:
        assert [name for name in document_only if name in response.headers] == []


async def frame_policy(app, path="/embed/frame"):
    return directives((await app.test_client().get(path)).headers["Content-Security-Policy"])


async def test_policy_is_strict(secured):
    """The widget's frame: no 'unsafe-inline', no wildcard or bare-scheme sources; plugins, <base> and form
    submission off; default 'none'; it may frame only this server."""
    policy = await frame_policy(secured(allow_origins=ORIGINS))
    assert policy["default-src"] == ["'none'"]
    assert policy["object-src"] == ["'none'"] and policy["base-uri"] == ["'none'"] and policy["form-action"] == ["'none'"]
    assert policy["script-src"][:3] == ["'self'", "'unsafe-eval'", "'wasm-unsafe-eval'"]
    for name, values in policy.items():
        assert "'unsafe-inline'" not in values, name
        assert "*" not in values and "https:" not in values and "http:" not in values, name
    assert policy["connect-src"] == ["'self'"]  # CSP3: 'self' covers ws:/wss: to the same host
    assert "frame-src" not in policy  # the widget frames nothing: default-src 'none' stands


async def test_the_demo_page_has_a_host_sites_policy(secured):
    """The demo page is any site's page: its policy is what docs/embedding.md asks of a host, with no
    'unsafe-eval' and no 'unsafe-inline' (the runtime runs in the frame, under the frame's policy)."""
    response = await secured(allow_origins=ORIGINS).test_client().get("/")
    assert len(response.headers.getlist("Content-Security-Policy")) == 1  # two would both apply: the stricter wins
    header = response.headers["Content-Security-Policy"]
    policy = directives(header)
    assert policy["default-src"] == ["'none'"] and policy["script-src"] == ["'self'"]
    assert policy["frame-src"] == ["'self'"] and policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    for values in policy.values():
        assert "'unsafe-eval'" not in values and "'unsafe-inline'" not in values and "'wasm-unsafe-eval'" not in values
    assert "*" not in header


def test_host_page_policy_allows_given_styles_only():
    policy = directives(host_page_policy(["'sha256-abc='"]))
    assert policy["style-src"] == ["'self'", "'sha256-abc='"]
    assert directives(host_page_policy())["style-src"] == ["'self'"]


async def test_inline_style_of_the_rendered_page_is_allowed_by_hash(secured):
    """The hash computed at start from index.html matches the <style> of the page actually served, under
    the host policy the demo page carries."""
    response = await secured().test_client().get("/")
    page = await response.get_data(as_text=True)
    styles = re.findall(r"<style\b[^>]*>(.*?)</style>", page, re.S)
    assert styles, "the demo page has an inline <style>; if it moved to a file, drop this test"
    allowed = directives(response.headers["Content-Security-Policy"])["style-src"]
    for style in styles:
        assert sha256_source(style) in allowed


@pytest.mark.parametrize("path", ["/", "/embed/frame", "/embed/frame?lang=de"])
async def test_every_inline_script_of_the_page_is_data_or_hashed(secured, path):
    """Inline scripts the browser would execute must be allowed by hash; JSON and Python blocks are data."""
    response = await secured().test_client().get(path)
    page = await response.get_data(as_text=True)
    allowed = directives(response.headers["Content-Security-Policy"])["script-src"]
    for attributes, body in re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.S):
        if "src=" in attributes:
            continue
        kind = re.search(r"""(?:^|\s)type=["']?([^"'\s>]+)""", attributes)
        if kind and kind.group(1) not in ("module", "text/javascript"):
            continue
        assert sha256_source(body) in allowed, f"inline script not allowed by the CSP: {body[:60]!r}"


@pytest.mark.parametrize("path", ["/embed/frame", "/embed/frame?lang=de"])
async def test_frame_ancestors_are_self_and_the_allowed_origins(secured, path):
    """Only this server and the allowed sites (wildcards included) may frame the widget."""
    policy = await frame_policy(secured(allow_origins=ORIGINS), path)
    assert policy["frame-ancestors"] == ["'self'", "https://shop.example.com", "https://*.example.org"]


async def test_frame_ancestors_default_is_self_only(secured):
    """With no allowed origins configured only the server itself (its demo page) may frame the widget."""
    assert (await frame_policy(secured()))["frame-ancestors"] == ["'self'"]


async def test_socket_url_elsewhere_is_allowed_for_connect(secured):
    """With --socket-url on another host, the frame's connect-src admits that host's socket and its /ws-check."""
    policy = await frame_policy(secured(socket_url="wss://chat.example.com/ws"))
    assert policy["connect-src"] == ["'self'", "wss://chat.example.com", "https://chat.example.com"]


def test_overrides_replace_or_drop_directives():
    """Experiments can replace a directive or drop it; the others stay as they are."""

    class Policy:
        rules = []

    header = content_security_policy(Policy(), overrides={"script-src": "'self'", "img-src": None})
    policy = directives(header)
    assert policy["script-src"] == ["'self'"] and "img-src" not in policy and policy["default-src"] == ["'none'"]


def test_inline_hashes_pick_executable_blocks_only(tmp_path, caplog):
    """Executable inline scripts and styles are hashed; JSON/Python blocks, src scripts and templated blocks are not."""
    (tmp_path / "widget").mkdir()
    (tmp_path / "index.html").write_text(
        "<style>a{}</style><script>go()</script><script type=module>mod()</script>"
        '<script type="application/json">{"a":1}</script><script data-type="x" type="mpy">print(1)</script>'
        '<script src="/x.js"></script><script>var x = "{{ value }}"</script>',
        encoding="utf-8",
    )
    (tmp_path / "widget" / "frame.html").write_text("<style>a{}</style><STYLE media=print>b{}</STYLE>", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="chat_widget.security"):
        styles, scripts = inline_hashes(tmp_path)
    assert styles == [sha256_source("a{}"), sha256_source("b{}")]
    assert scripts == [sha256_source("go()"), sha256_source("mod()")]
    assert "template syntax" in caplog.text


def test_inline_hashes_tolerate_missing_templates(tmp_path):
    """A root without the templates (a test app) yields no hashes instead of failing."""
    assert inline_hashes(tmp_path) == ([], [])
