"""The pyodide_snapshot experiment: the frame names our interpreter module only once the snapshot and its
compressed copies exist; the module imports the pinned Pyodide and fetches the snapshot; both are served
immutable, the snapshot compressed; plain Pyodide otherwise. (Making a real snapshot takes node and
90 s of brotli: bench/pyodide_phases.py does that part in a browser.)"""

import json
import re
import shutil
import subprocess

import brotli
import pytest

from server.assets import snapshot
from server.config import Config, ConfigError

IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture
def make_app(make_app, tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot.Snapshots, "start_making", lambda self, path: None)  # no node in these tests

    def make(**settings):
        app = make_app(**{"asset_cache": tmp_path / "compressed", "runtime": "pyodide", **settings})
        app.extensions["chat_assets"].store.brotli_quality = 4
        return app
    return make


def made_snapshot(app, data=b"\0" * 200_000 + b"memory"):
    """A stand-in snapshot where the real one would be, with its compressed copies."""
    assets = app.extensions["chat_assets"]
    path = assets.runtime.snapshots.path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    info = assets.files.info(path)
    for encoding in ("br", "gzip"):
        assets.store.schedule(info, encoding).result(timeout=30)
    return info


async def interpreter(client):
    html = await (await client.get("/embed/frame")).get_data(as_text=True)
    config = re.search(r"""config='([^']+)'""", html) or re.search(r'config="([^"]+)"', html)
    text = config.group(1).replace("&#34;", '"').replace("&quot;", '"')
    return json.loads(text)["interpreter"], html


async def test_off_by_default_and_until_the_snapshot_is_ready(make_app, tmp_path):
    """Default (even with a snapshot made): the pinned pyodide.mjs. Switched on but not made yet: the same."""
    app = make_app()
    made_snapshot(app)
    for app in (app, make_app(pyodide_snapshot=True, asset_cache=tmp_path / "empty")):
        url, _ = await interpreter(app.test_client())
        assert re.fullmatch(r"/vendor/pyodide@[\w.\-]+/pyodide\.mjs", url), url


async def test_a_ready_snapshot_is_loaded_through_our_module_and_sent_compressed(make_app):
    app = make_app(pyodide_snapshot=True)
    info = made_snapshot(app)
    client = app.test_client()
    url, html = await interpreter(client)
    assert url == f"/vendor/pyodide-snapshot@{info.version}/pyodide.mjs"
    snapshot_url = url.replace("pyodide.mjs", "snapshot.bin")
    assert f'<link rel="modulepreload" href="{url}">' in html
    assert f'<link rel="preload" as="fetch" crossorigin href="{snapshot_url}">' in html

    module = await client.get(url)
    assert module.status_code == 200 and module.headers["Cache-Control"] == IMMUTABLE
    assert module.headers["Content-Type"].startswith("text/javascript")
    text = await module.get_data(as_text=True)
    pinned = re.search(r'from "(/vendor/pyodide@[\w.\-]+/pyodide\.mjs)"', text).group(1)
    assert (await client.get(pinned)).status_code == 200
    assert f'fetch("{snapshot_url}")' in text and "_loadSnapshot" in text and "seed()" in text

    sent = await client.get(snapshot_url, headers={"Accept-Encoding": "br"})
    assert sent.status_code == 200 and sent.headers["Content-Encoding"] == "br"
    assert sent.headers["Cache-Control"] == IMMUTABLE
    assert brotli.decompress(await sent.get_data()) == info.path.read_bytes()
    assert (await client.get(url.replace(info.version, "0" * 12))).status_code == 404  # another snapshot's URL


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_interpreter_module_is_valid_javascript(tmp_path):
    path = tmp_path / "wrapper.mjs"
    path.write_text(snapshot.wrapper_module("/vendor/pyodide@1/pyodide.mjs", "/vendor/pyodide@1/", "/s/snapshot.bin"))
    subprocess.run(["node", "--check", str(path)], check=True)


def test_the_setting_is_a_flag():
    assert Config(pyodide_snapshot="1").pyodide_snapshot is True
    with pytest.raises(ConfigError, match="pyodide_snapshot"):
        Config(pyodide_snapshot="perhaps")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_makes_a_snapshot_of_the_pinned_pyodide(make_app):
    """The real thing (a few seconds): node restores nothing, starts CPython, writes the memory out; the frame
    then names our module. A Pyodide upgrade that drops ``_makeSnapshot`` fails here, not in a browser."""
    app = make_app(pyodide_snapshot=True)
    snapshots = app.extensions["chat_assets"].runtime.snapshots
    path = snapshots.make()
    assert path is not None and path.stat().st_size > 10 << 20  # a wasm memory: tens of MB
    assert app.extensions["chat_assets"].runtime.snapshot().path == path


def test_without_node_pyodide_starts_the_usual_way(make_app, monkeypatch, caplog):
    app = make_app(pyodide_snapshot=True)
    snapshots = app.extensions["chat_assets"].runtime.snapshots
    monkeypatch.setattr(snapshot.shutil, "which", lambda name: None)
    assert snapshots.make() is None and snapshots.failed
    assert "node is not installed" in caplog.text
    assert app.extensions["chat_assets"].runtime.snapshot() is None
