"""Static assets: content negotiation, caching and validators, generated preloads, the Python bundle, traversal."""

import ast
import gzip
import json
import re
from pathlib import Path

import brotli
import pytest

from server import assets
from server.config import Config

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "node_modules/@pyscript/core/dist"
BR_GZIP = {"Accept-Encoding": "gzip, deflate, br, zstd"}


def version(package_json):
    return json.loads((ROOT / "node_modules" / package_json / "package.json").read_text())["version"]


PYSCRIPT = version("@pyscript/core")
MICROPYTHON = version("@micropython/micropython-webassembly-pyscript")
CORE_CHUNK = re.search(r'from\s*"\./([\w.\-]+\.js)"', (DIST / "core.js").read_text()).group(1)


@pytest.fixture(autouse=True)
def compressed_cache(tmp_path, monkeypatch):
    """Every test compresses into its own folder, at a low brotli quality (fast; same code path)."""
    monkeypatch.setenv("CHAT_WIDGET_ASSET_CACHE", str(tmp_path / "compressed"))
    monkeypatch.setattr(assets, "BROTLI_QUALITY", 4)
    return tmp_path / "compressed"


@pytest.fixture
def client(make_app):
    return make_app().test_client()


async def page_html(client):
    return await (await client.get("/")).get_data(as_text=True)


async def test_brotli_when_offered_keeps_content_type(client):
    """A browser offering br gets brotli, the JavaScript Content-Type, and Vary: Accept-Encoding."""
    response = await client.get(f"/vendor/pyscript@{PYSCRIPT}/{CORE_CHUNK}", headers=BR_GZIP)
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "br"
    assert response.headers["Content-Type"].startswith("text/javascript")
    assert "Accept-Encoding" in response.headers["Vary"]
    assert brotli.decompress(await response.get_data()) == (DIST / CORE_CHUNK).read_bytes()


async def test_gzip_when_brotli_not_offered(client):
    """Without br (or with br;q=0) the same file comes gzip-encoded."""
    for offer in ("gzip, deflate", "br;q=0, gzip"):
        response = await client.get(f"/vendor/pyscript@{PYSCRIPT}/{CORE_CHUNK}", headers={"Accept-Encoding": offer})
        assert response.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await response.get_data()) == (DIST / CORE_CHUNK).read_bytes()


async def test_identity_without_accept_encoding(client):
    """No Accept-Encoding: the file as it is, no Content-Encoding, still Vary: Accept-Encoding."""
    response = await client.get(f"/vendor/pyscript@{PYSCRIPT}/core.js", headers={"Accept-Encoding": ""})
    assert "Content-Encoding" not in response.headers
    assert "Accept-Encoding" in response.headers["Vary"]
    assert await response.get_data() == (DIST / "core.js").read_bytes()


async def test_wasm_stays_application_wasm_when_compressed(make_app):
    """The compressed wasm keeps Content-Type application/wasm (needed for streaming compilation)."""
    app = make_app()
    config = app.extensions["chat_config"]
    wasm = config.root / assets.VENDOR["micropython"] / "micropython.wasm"
    assets.compressed_store(config).schedule(assets.file_info(wasm), "br").result(timeout=60)
    response = await app.test_client().get(f"/vendor/micropython@{MICROPYTHON}/micropython.wasm", headers=BR_GZIP)
    assert response.headers["Content-Type"] == "application/wasm"
    assert response.headers["Content-Encoding"] == "br"
    assert brotli.decompress(await response.get_data()) == wasm.read_bytes()


async def test_compressed_copy_is_kept_on_disk(client, compressed_cache):
    """The first request leaves a compressed copy named by the file's content hash in the cache folder."""
    await client.get(f"/vendor/pyscript@{PYSCRIPT}/core.js", headers=BR_GZIP)
    digest = assets.file_info(DIST / "core.js").digest
    assert (compressed_cache / f"{digest}.br").is_file()


async def test_versioned_vendor_url_is_immutable_and_plain_url_revalidates(client):
    """/vendor/<pkg>@<version>/ is cached for a year (immutable); /vendor/<pkg>/ is no-cache."""
    versioned = await client.get(f"/vendor/pyscript@{PYSCRIPT}/core.js")
    assert versioned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    plain = await client.get("/vendor/pyscript/core.js")
    assert plain.status_code == 200 and plain.headers["Cache-Control"] == "no-cache"


async def test_other_version_is_404(client):
    """A versioned URL naming a release that is not installed is refused, never cached under that name."""
    assert (await client.get("/vendor/pyscript@0.0.1/core.js")).status_code == 404
    assert (await client.get("/vendor/pyscript@/core.js")).status_code == 404


async def test_etag_and_last_modified_give_304(client):
    """If-None-Match with the ETag (of any encoding) and If-Modified-Since answer 304 without a body."""
    first = await client.get("/vendor/pyscript/core.js", headers=BR_GZIP)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    for headers in ({"If-None-Match": etag}, {"If-None-Match": f'"x", W/{etag}'}, {"If-Modified-Since": modified}):
        again = await client.get("/vendor/pyscript/core.js", headers={**BR_GZIP, **headers})
        assert again.status_code == 304 and await again.get_data() == b""
        assert again.headers["Cache-Control"] == "no-cache"
    changed = await client.get("/vendor/pyscript/core.js", headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200


async def test_page_is_no_cache_with_validator(client):
    """The page is revalidated on every visit (no-cache) and answers 304 while it has not changed."""
    first = await client.get("/", headers=BR_GZIP)
    assert first.headers["Cache-Control"] == "no-cache" and first.headers["Content-Encoding"] == "br"
    again = await client.get("/", headers={**BR_GZIP, "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304


async def test_widget_files_carry_content_hash(client):
    """Widget files are linked with ?v=<content hash> (immutable); without it, or stale, they revalidate."""
    html = await page_html(client)
    url = re.search(r'href="(/widget/widget\.css\?v=(\w+))"', html)
    assert url and url.group(2) == assets.file_info(ROOT / "widget/widget.css").version
    assert (await client.get(url.group(1))).headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert (await client.get("/widget/widget.css")).headers["Cache-Control"] == "no-cache"
    assert (await client.get("/widget/widget.css?v=stale")).headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("runtime", ["micropython", "pyodide"])
async def test_preloads_come_from_installed_package_and_exist(make_app, runtime):
    """The preloads name core.js's imported chunk and the runtime; each is in the page and answers 200."""
    app = make_app(runtime=runtime)
    client = app.test_client()
    config = app.extensions["chat_config"]
    links = assets.preloads(config)
    urls = [url for _, url in links]
    assert f"/vendor/pyscript@{PYSCRIPT}/{CORE_CHUNK}" in urls
    assert any(url.endswith(".wasm") for rel, url in links if rel == "preload")
    html = await page_html(client)
    for rel, url in links:
        if rel == "modulepreload":
            assert f'<link rel="modulepreload" href="{url}">' in html
        else:
            assert f'<link rel="preload" as="fetch" crossorigin href="{url}">' in html
        response = await client.get(url, headers=BR_GZIP)
        assert response.status_code == 200, url
        assert response.headers["Cache-Control"].endswith("immutable"), url


async def test_unused_plugins_excluded_by_name_from_installed_core(client):
    """Every PyScript plugin found in the installed core is excluded, for both script types."""
    html = await page_html(client)
    config = json.loads(re.search(r"config='([^']+)'", html).group(1))
    assert "!error" in config["plugins"] and "!py-terminal" in config["plugins"]
    assert config["interpreter"] == f"/vendor/micropython@{MICROPYTHON}/micropython.mjs"
    assert "<py-config hidden>" in html


@pytest.mark.parametrize("path", [
    f"/vendor/pyscript@{PYSCRIPT}/../../package.json",
    f"/vendor/pyscript@{PYSCRIPT}/%2e%2e/%2e%2e/package.json",
    f"/vendor/pyscript@{PYSCRIPT}/..%2f..%2fpackage.json",
    f"/vendor/micropython@{MICROPYTHON}/%2e%2e%2f%2e%2e%2fpyodide%2fpackage.json",
    f"/vendor/pyscript@{PYSCRIPT}/%2fetc%2fpasswd",
    f"/vendor/pyscript@{PYSCRIPT}/",
    "/vendor/..%2fnode_modules/pyodide/package.json",
    "/widget/..%2fserver%2fapp.py",
    "/widget/%2e%2e%2fpyproject.toml",
    "/widget/main.bundle.py%2f..%2f..%2fserver%2fapp.py",
])
async def test_traversal_on_asset_routes_is_404(client, path):
    """Traversal attempts on the versioned vendor, widget and bundle routes get 404 (after Werkzeug's slash merge)."""
    response = await client.get(path)
    if response.status_code == 308:  # "//" merged into "/": the target must stay inside and be missing
        location = response.headers["Location"].removeprefix("http://localhost")
        assert location.startswith(path.split("@")[0]) and ".." not in location
        response = await client.get(location)
    assert response.status_code == 404


async def test_bundle_is_one_request_that_installs_the_modules(client, tmp_path, monkeypatch):
    """The Python bundle is linked from the page, immutable, and writes each widget module (stripped) before main."""
    html = await page_html(client)
    url = re.search(r'src="(/widget/main\.bundle\.py\?v=\w+)"', html).group(1)
    response = await client.get(url)
    assert response.headers["Cache-Control"].endswith("immutable")
    source = (await response.get_data()).decode()
    prelude = source[:source.index("del _chat_widget_install")]
    monkeypatch.chdir(tmp_path)
    exec(compile(prelude, "bundle", "exec"), {})  # noqa: S102 - our own generated code
    for path in (ROOT / "widget").glob("*.py"):
        if path.name != "main.py":
            assert (tmp_path / "widget" / path.name).read_text() == assets.strip_python(path.read_text())
    ast.parse(source)


def test_strip_python_keeps_lines_and_code():
    """Comments and docstrings go, every line stays in place, and the code is unchanged."""
    source = 'def f(x):\n    """Doc."""\n    # note\n    return x  # why\n\ntext = """keep  \n me"""\n'
    stripped = assets.strip_python(source)
    assert stripped.count("\n") == source.count("\n")
    assert "Doc" not in stripped and "note" not in stripped and "why" not in stripped
    assert 'text = """keep  \n me"""' in stripped
    scope = {}
    exec(stripped, scope)  # noqa: S102
    assert scope["f"](3) == 3


def test_manifest_reads_chunks_and_plugins_from_core():
    """The core chunk and the plugin registry are read from the installed core.js (hashes never hard-coded)."""
    manifest = assets.pyscript_manifest(Config())
    assert manifest["chunks"][:2] == ["core.js", CORE_CHUNK]
    assert "error" in manifest["plugins"] and "py-terminal" in manifest["plugins"]
    for chunk in manifest["plugins"].values():
        assert chunk is None or (DIST / chunk).is_file()
