"""Static assets: content negotiation, caching and validators, generated preloads, the Python bundle, traversal."""

import ast
import gzip
import json
import re
import shutil
import subprocess
from pathlib import Path

import brotli
import pytest

from server.assets import Assets, strip_python
from server.assets.bundle import ENTRY
from server.assets.fileinfo import FileMemo
from server.assets.runtime import VENDOR, read_manifest
from server.config import Config

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "node_modules/@pyscript/core/dist"
BR_GZIP = {"Accept-Encoding": "gzip, deflate, br, zstd"}
IMMUTABLE = "public, max-age=31536000, immutable"


def version(package_json):
    return json.loads((ROOT / "node_modules" / package_json / "package.json").read_text())["version"]


PYSCRIPT = version("@pyscript/core")
MICROPYTHON = version("@micropython/micropython-webassembly-pyscript")
MICROPYTHON_MJS = ROOT / VENDOR["micropython"] / "micropython.mjs"
CORE_CHUNK = re.search(r'from\s*"\./([\w.\-]+\.js)"', (DIST / "core.js").read_text()).group(1)


SERVER_ONLY = {"protocol/checks.py"}  # the server's validation of widget frames: never imported by the widget


def browser_modules():
    """Every file the browser's Python imports, found here independently of the server: relative paths."""
    folders = ("widget", "widget/core", "widget/shell", "protocol")
    found = {path.relative_to(ROOT).as_posix() for folder in folders for path in (ROOT / folder).glob("*.py")}
    return found - {ENTRY} - SERVER_ONLY


def digest_version(path):
    return FileMemo().info(path).version


@pytest.fixture
def make_app(make_app, tmp_path):
    """Apps that compress into this test's own folder, at a low brotli quality (fast; same code path)."""
    def make(**settings):
        app = make_app(**{"asset_cache": tmp_path / "compressed", **settings})
        app.extensions["chat_assets"].store.brotli_quality = 4
        return app
    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


async def page_html(client):
    """The widget's page: the frame the host page's /embed.js loads (the demo page "/" only has the snippet)."""
    return await (await client.get("/embed/frame")).get_data(as_text=True)


def page_config(html):
    return json.loads(re.search(r"config='([^']+)'", html).group(1))


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


async def test_wasm_stays_application_wasm_when_compressed(app):
    """The compressed wasm keeps Content-Type application/wasm (needed for streaming compilation)."""
    assets = app.extensions["chat_assets"]
    wasm = assets.config.root / VENDOR["micropython"] / "micropython.wasm"
    assets.store.schedule(assets.files.info(wasm), "br").result(timeout=60)
    response = await app.test_client().get(f"/vendor/micropython@{MICROPYTHON}/micropython.wasm", headers=BR_GZIP)
    assert response.headers["Content-Type"] == "application/wasm"
    assert response.headers["Content-Encoding"] == "br"
    assert brotli.decompress(await response.get_data()) == wasm.read_bytes()


async def test_compressed_copy_is_kept_in_the_configured_folder(client, tmp_path):
    """The first request leaves a compressed copy named by the file's content hash in config.asset_cache."""
    await client.get(f"/vendor/pyscript@{PYSCRIPT}/core.js", headers=BR_GZIP)
    digest = FileMemo().info(DIST / "core.js").digest
    assert (tmp_path / "compressed" / f"{digest}.br").is_file()


def test_each_app_has_its_own_state(make_app):
    """Two apps share no caches: each gets its own Assets, file memo, bodies and compression store."""
    first, second = (make_app().extensions["chat_assets"] for _ in range(2))
    assert isinstance(first, Assets)
    assert first.files is not second.files and first.http.bodies is not second.http.bodies
    assert first.store is not second.store and first.http.generated is not second.http.generated


async def test_versioned_vendor_url_is_immutable_and_plain_url_revalidates(client):
    """/vendor/<pkg>@<version>/ is cached for a year (immutable) and carries no validator (nothing asks it
    again; bytes on every first visit); /vendor/<pkg>/ is no-cache with its validators."""
    versioned = await client.get(f"/vendor/pyscript@{PYSCRIPT}/core.js")
    assert versioned.headers["Cache-Control"] == IMMUTABLE
    assert "ETag" not in versioned.headers and "Last-Modified" not in versioned.headers
    plain = await client.get("/vendor/pyscript/core.js")
    assert plain.status_code == 200 and plain.headers["Cache-Control"] == "no-cache"
    assert plain.headers["ETag"] and plain.headers["Last-Modified"]


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


@pytest.mark.parametrize("path", ["/", "/embed/frame", "/embed/frame?lang=de"])
async def test_pages_are_no_cache_with_validator(client, path):
    """The demo page and the frame are revalidated on every visit (no-cache: the frame names the
    current release's runtime files) and answer 304 while they have not changed (/embed.js: test_embed.py)."""
    first = await client.get(path, headers=BR_GZIP)
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == "no-cache" and first.headers["Content-Encoding"] == "br"
    again = await client.get(path, headers={**BR_GZIP, "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and await again.get_data() == b""


async def test_each_language_of_the_frame_has_its_own_validator(client):
    """The German frame is not the English one: a validator of one never answers 304 for the other."""
    english = await client.get("/embed/frame?lang=en")
    german = await client.get("/embed/frame?lang=de", headers={"If-None-Match": english.headers["ETag"]})
    assert german.status_code == 200 and english.headers["ETag"] != german.headers["ETag"]


async def test_widget_files_carry_content_hash(client):
    """Widget files are linked with ?v=<content hash> (immutable); without it, or stale, they revalidate."""
    html = await page_html(client)
    url = re.search(r'href="(/widget/widget\.css\?v=(\w+))"', html)
    assert url and url.group(2) == digest_version(ROOT / "widget/widget.css")
    assert (await client.get(url.group(1))).headers["Cache-Control"] == IMMUTABLE
    assert (await client.get("/widget/widget.css")).headers["Cache-Control"] == "no-cache"
    assert (await client.get("/widget/widget.css?v=stale")).headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("relative", sorted(name for name in browser_modules() | {ENTRY} if "/__init__" not in name))
async def test_package_modules_are_served_at_their_paths(client, relative):
    """Every module of widget/ (nested: /widget/core/x.py) and protocol/ is served as Python, immutable when versioned."""
    response = await client.get(f"/{relative}", headers={"Accept-Encoding": ""})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/x-python")
    assert await response.get_data() == (ROOT / relative).read_bytes()
    versioned = await client.get(f"/{relative}?v={digest_version(ROOT / relative)}")
    assert versioned.headers["Cache-Control"] == IMMUTABLE


async def test_settings_carry_the_configured_version(client, app):
    """The widget settings in the page name the server's version from the Config, not a fixed string."""
    html = await page_html(client)
    settings = json.loads(re.search(r'id="chat-widget-settings">([^<]+)<', html).group(1))
    assert settings["version"] == app.extensions["chat_config"].version


@pytest.mark.parametrize("runtime", ["micropython", "pyodide"])
async def test_preloads_come_from_installed_package_and_exist(make_app, runtime):
    """The preloads name core.js's imported chunk and the runtime; each is in the page and answers 200."""
    app = make_app(runtime=runtime)
    client = app.test_client()
    links = app.extensions["chat_assets"].preloads()
    urls = [url for _, url in links]
    assert f"/vendor/pyscript@{PYSCRIPT}/{CORE_CHUNK}" in urls
    assert any(url.endswith(".wasm") for rel, url in links if rel == "preload")
    assert any(url.startswith("/widget/main.bundle.py?v=") for url in urls) == (runtime == "micropython")
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
    config = page_config(html)
    assert "!error" in config["plugins"] and "!py-terminal" in config["plugins"]
    assert config["interpreter"] == f"/vendor/micropython@{MICROPYTHON}/micropython.mjs"
    assert "files" not in config  # the bundle writes the modules itself
    assert "<py-config hidden>" in html


@pytest.mark.parametrize("path", [
    f"/vendor/pyscript@{PYSCRIPT}/../../package.json",
    f"/vendor/pyscript@{PYSCRIPT}/%2e%2e/%2e%2e/package.json",
    f"/vendor/pyscript@{PYSCRIPT}/..%2f..%2fpackage.json",
    f"/vendor/micropython@{MICROPYTHON}/%2e%2e%2f%2e%2e%2fpyodide%2fpackage.json",
    f"/vendor/pyscript@{PYSCRIPT}/%2fetc%2fpasswd",
    f"/vendor/pyscript@{PYSCRIPT}/",
    "/vendor/..%2fnode_modules/pyodide/package.json",
    "/widget/../server/config.py",
    "/widget/core/../../server/config.py",
    "/widget/..%2fserver%2fapp.py",
    "/widget/%2e%2e%2fpyproject.toml",
    "/widget/%2e%2e/server/config.py",
    "/widget//etc/passwd",
    "/widget/main.bundle.py%2f..%2f..%2fserver%2fapp.py",
    "/protocol/../server/config.py",
    "/protocol/%2e%2e%2fserver%2fconfig.py",
    "/protocol/../widget/widget.css",
])
async def test_traversal_on_asset_routes_is_404(client, path):
    """Traversal attempts on the vendor, widget, protocol and bundle routes get 404 (after Werkzeug's slash merge)."""
    response = await client.get(path)
    if response.status_code == 308:  # "//" merged into "/": the target must stay inside and be missing
        location = response.headers["Location"].removeprefix("http://localhost")
        assert location.startswith(path.split("@")[0].split("//")[0]) and ".." not in location
        response = await client.get(location)
    assert response.status_code == 404


async def test_bundle_is_one_request_that_installs_every_module(make_app, tmp_path, monkeypatch):
    """The source bundle is linked from the page, immutable, and its prelude writes every module of widget/
    and protocol/ (stripped) at its relative path, before main.py, whose line numbers it states."""
    client = make_app().test_client()
    html = await page_html(client)
    url = re.search(r'src="(/widget/main\.bundle\.py\?v=\w+)"', html).group(1)
    response = await client.get(url)
    assert response.headers["Cache-Control"] == IMMUTABLE
    source = (await response.get_data()).decode()
    ast.parse(source)
    prelude, _, main = source.partition("del _chat_widget_install\n")
    stated = int(re.search(r"its line 1 is line (\d+) of this file", main.splitlines()[0]).group(1))
    assert source.splitlines()[stated - 1:] == strip_python((ROOT / ENTRY).read_text()).splitlines()
    expected = browser_modules()
    assert {"widget/__init__.py", "widget/core/__init__.py", "protocol/__init__.py", "protocol/frames.py"} <= expected
    assert "checks.py" not in prelude  # what only the server needs is not shipped
    workdir = tmp_path / "browser"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    exec(compile(prelude, "bundle", "exec"), {})  # noqa: S102 - our own generated code, main.py left out
    written = {path.relative_to(workdir).as_posix() for path in workdir.rglob("*") if path.is_file()}
    assert written == expected
    for relative in expected:
        assert (workdir / relative).read_text() == strip_python((ROOT / relative).read_text()), relative


RUN_IN_MICROPYTHON = r"""
import { loadMicroPython } from %(mjs)s;
import fs from "fs";
const mp = await loadMicroPython({stdout: (line) => process.stdout.write(line + "\n")});
try { mp.runPython(fs.readFileSync(%(script)s, "utf8")); }
catch (e) { console.log("PYERROR " + e.message); process.exit(1); }
"""


@pytest.mark.skipif(not (shutil.which("node") and MICROPYTHON_MJS.exists()),
                    reason="node or the MicroPython wasm package (npm) is not installed")
def test_bundle_prelude_runs_under_micropython(make_app, tmp_path):
    """Under the real MicroPython (no os.makedirs, no importlib) the prelude writes every module, nested folders included."""
    assets = make_app().extensions["chat_assets"]
    source = assets.python.bundle().decode()
    prelude = source.partition("del _chat_widget_install\n")[0]
    modules = sorted(browser_modules())
    script = tmp_path / "script.py"
    script.write_text(prelude + "import json\nfor name in %r:\n    print(json.dumps([name, open(name).read()]))\n" % modules)
    runner = tmp_path / "run.mjs"
    runner.write_text(RUN_IN_MICROPYTHON % {"mjs": json.dumps(MICROPYTHON_MJS.as_uri()), "script": json.dumps(str(script))})
    proc = subprocess.run(["node", str(runner)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    written = dict(json.loads(line) for line in proc.stdout.splitlines())
    assert written == {name: strip_python((ROOT / name).read_text()) for name in modules}


async def test_files_delivery_fetches_each_module_at_its_path(make_app):
    """With python_delivery="files" the script's src is main.py and PyScript's files config maps each
    module's versioned URL to its relative path; every one answers 200, immutable, and is preloaded."""
    client = make_app(python_delivery="files").test_client()
    html = await page_html(client)
    main_src = re.search(r'type="mpy" src="([^"]+)"', html).group(1)
    assert main_src == f"/{ENTRY}?v={digest_version(ROOT / ENTRY)}"
    files = page_config(html)["files"]
    assert sorted(files.values()) == sorted(f"./{name}" for name in browser_modules())
    for url, target in [(main_src, None), *files.items()]:
        if target is not None:
            assert url == f"/{target[2:]}?v={digest_version(ROOT / target[2:])}"
        assert f'<link rel="preload" as="fetch" crossorigin href="{url}">' in html
        response = await client.get(url)
        assert response.status_code == 200 and response.headers["Cache-Control"] == IMMUTABLE, url
    assert "main.bundle.py" not in html


def test_strip_python_keeps_lines_and_code():
    """Comments and docstrings go, every line stays in place, and the code is unchanged."""
    source = 'def f(x):\n    """Doc."""\n    # note\n    return x  # why\n\ntext = """keep  \n me"""\n'
    stripped = strip_python(source)
    assert stripped.count("\n") == source.count("\n")
    assert "Doc" not in stripped and "note" not in stripped and "why" not in stripped
    assert 'text = """keep  \n me"""' in stripped
    scope = {}
    exec(stripped, scope)  # noqa: S102
    assert scope["f"](3) == 3


def test_strip_python_indents_one_space_per_block_and_leaves_strings_and_brackets():
    """Statements are indented one space per block (fewer bytes); a string's lines and a bracket's
    continuation lines keep their spaces, and the code still does the same."""
    source = ('class A:\n    def f(self, x):\n        if x:\n            return (x,\n                    2)\n'
              '        text = """a\n    b"""\n        return text\n')
    stripped = strip_python(source)
    assert stripped.splitlines() == ["class A:", " def f(self, x):", "  if x:", "   return (x,",
                                     "                    2)", '  text = """a', '    b"""', "  return text"]
    scope = {}
    exec(stripped, scope)  # noqa: S102
    assert scope["A"]().f(1) == (1, 2) and scope["A"]().f(0) == "a\n    b"


def test_manifest_reads_chunks_and_plugins_from_core():
    """The core chunk and the plugin registry are read from the installed core.js (hashes never hard-coded)."""
    manifest = read_manifest(Config().root / VENDOR["pyscript"] / "core.js")
    assert manifest["chunks"][:2] == ["core.js", CORE_CHUNK]
    assert "error" in manifest["plugins"] and "py-terminal" in manifest["plugins"]
    for chunk in manifest["plugins"].values():
        assert chunk is None or (DIST / chunk).is_file()
