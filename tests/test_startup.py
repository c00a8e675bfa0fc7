"""A fresh server answers its first visitors while it is still compressing the runtimes: nothing a visitor
asks for waits behind the warming at start (Pyodide's copies take about 30 s of CPU). The numbers are
bench/startup.py's; these tests pin the behaviour, with timeouts far above the expected times."""

import gzip
import re
import threading
import time
from pathlib import Path

import brotli
import httpx
import pytest

import live
from server.assets import compression
from server.assets.compression import CompressedStore
from server.assets.fileinfo import FileMemo

ROOT = Path(__file__).resolve().parent.parent
PRELOAD = re.compile(r"""<link rel="(?:modulepreload|preload)"[^>]*?href="([^"]+)\"""")
FOLDERS = {"pyscript": "node_modules/@pyscript/core/dist", "pyodide": "node_modules/pyodide"}
GENEROUS = 20.0  # seconds; a request answered from what exists takes milliseconds


def local_file(url):
    """The installed file behind /vendor/<package>@<version>/<name>."""
    package, name = re.match(r"/vendor/([a-z]+)@[^/]+/(.+)$", url).groups()
    return ROOT / FOLDERS[package] / name


def get(http, url):
    """(status, body as received, Content-Encoding): raw bytes, so that the encoding named is checked here."""
    with http.stream("GET", url) as response:
        return response.status_code, b"".join(response.iter_raw()), response.headers.get("Content-Encoding")


def decoded(body, encoding):
    assert encoding in (None, "br", "gzip"), encoding
    return brotli.decompress(body) if encoding == "br" else gzip.decompress(body) if encoding == "gzip" else body


@pytest.fixture
def fresh_pyodide_server(tmp_path):
    """A Pyodide server just started with an empty compression cache: its warming runs for many seconds."""
    server = live.start("--runtime", "pyodide", env={"CHAT_WIDGET_ASSET_CACHE": str(tmp_path)})
    yield server, tmp_path
    server.stop()


def test_the_first_visitor_gets_every_runtime_file_while_the_runtime_is_being_compressed(fresh_pyodide_server):
    """The page, the frame and every file the frame preloads are answered, each in a valid encoding, before
    the slowest copy (pyodide.asm.wasm in brotli) exists: a visitor does not wait for the warming."""
    server, cache = fresh_pyodide_server
    wasm_digest = FileMemo().info(ROOT / "node_modules/pyodide/pyodide.asm.wasm").digest
    headers = {"Accept-Encoding": "br, gzip"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=GENEROUS) as http:
        assert get(http, "/")[0] == 200
        status, body, encoding = get(http, "/embed/frame")
        assert status == 200
        urls = [url.replace("&amp;", "&") for url in PRELOAD.findall(decoded(body, encoding).decode())]
        vendor = [url for url in urls if url.startswith("/vendor/")]
        assert any(url.endswith("pyodide.asm.wasm") for url in vendor)
        for url in vendor:
            status, body, encoding = get(http, url)
            assert status == 200, url
            assert decoded(body, encoding) == local_file(url).read_bytes(), url
    assert not (cache / f"{wasm_digest}.br").exists(), "the warming finished first: nothing was tested"


def test_a_file_a_request_waits_for_is_not_queued_behind_the_warming(tmp_path, monkeypatch):
    """While the warming thread is busy with a big file, a small file's copy (which its request waits for)
    is made at once by the other thread."""
    release = threading.Event()
    real_compress = compression.compress

    def compress(data, encoding, brotli_quality=compression.BROTLI_QUALITY):
        if len(data) > compression.URGENT_SIZE:
            release.wait(GENEROUS)  # the big file's copy takes as long as the test wants
        return real_compress(data, encoding, brotli_quality)

    monkeypatch.setattr(compression, "compress", compress)
    big, small = tmp_path / "big.js", tmp_path / "small.js"
    big.write_text("let big = 1;\n" * 40_000)  # 520 KB
    small.write_text("let small = 2;\n" * 2_000)
    files = FileMemo()
    store = CompressedStore(tmp_path / "cache")
    try:
        store.warm([files.info(big)])
        deadline = time.monotonic() + GENEROUS
        while not any(job.running() for job in store.pending.values()) and time.monotonic() < deadline:
            time.sleep(0.01)
        store.warm([files.info(small)])  # queued behind the big one
        path = store.schedule(files.info(small), "gzip").result(timeout=GENEROUS / 2)  # a request's wait
        assert path and gzip.decompress(path.read_bytes()) == small.read_bytes()
        assert not release.is_set()
    finally:
        release.set()
