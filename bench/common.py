"""Shared pieces of the benchmarks: the real server in a subprocess, headless Chromium, network profiles, statistics.

Everything runs on loopback (127.0.0.1). Results go to ``bench/results/`` (gitignored).
"""

import asyncio
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "e2e"))

from host_site import HostSite  # noqa: E402  (e2e/host_site.py)
from server_process import ServerProcess  # noqa: E402  (e2e/server_process.py)


def awaiting(coroutine):
    """Where a suspended coroutine waits: its frame, then the frame of each coroutine it awaits, outermost
    first (``Task.print_stack`` shows only the outermost)."""
    lines = []
    while coroutine is not None:
        frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "gi_frame", None)
        if frame is not None:
            lines.append(f'  File "{frame.f_code.co_filename}", line {frame.f_lineno}, in {frame.f_code.co_name}')
        coroutine = getattr(coroutine, "cr_await", None) or getattr(coroutine, "gi_yieldfrom", None)
    return lines


def print_tasks(signum=None, frame=None):
    """Every asyncio task's await chain to stderr (SIGUSR1), tasks waiting in the same place counted
    once. A run stuck with its event loop idle shows nothing in faulthandler's stacks (every thread
    waits in ``select``); its tasks show what it is waiting for."""
    try:
        tasks = asyncio.all_tasks(asyncio.get_running_loop())
    except RuntimeError:
        print("SIGUSR1: no event loop is running", file=sys.stderr, flush=True)
        return
    places = {}
    for task in tasks:
        state = "cancelling" if task.cancelling() else "pending"
        place = (state, "\n".join(awaiting(task.get_coro())))
        places[place] = places.get(place, 0) + 1
    print(f"SIGUSR1: {len(tasks)} asyncio task(s)", file=sys.stderr)
    for (state, lines), count in sorted(places.items(), key=lambda item: -item[1]):
        print(f"{count} task(s) {state}, waiting in:\n{lines}", file=sys.stderr)
    sys.stderr.flush()


signal.signal(signal.SIGUSR1, print_tasks)  # every benchmark imports this module

# The launch arguments of e2e/conftest.py (system Chromium, as root, no background networking).
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync",
]

# name -> (download kbit/s or None for no throttling, latency ms, CPU slowdown)
PROFILES = {
    "loopback": (None, 0, 1),
    "50mbit-20ms": (50_000, 20, 1),
    "10mbit-40ms": (10_000, 40, 1),
    "slow4g": (1_600, 150, 1),
    "10mbit-cpu4x": (10_000, 40, 4),
}


def chromium_path():
    for candidate in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def launch_chromium(playwright):
    options = {"headless": True, "args": CHROMIUM_ARGS}
    path = chromium_path()
    if path:
        options["executable_path"] = path
    return playwright.chromium.launch(**options)


def apply_profile(cdp, name):
    """Network and CPU emulation for one page through its CDP session (Network must be enabled)."""
    kbits, latency, cpu = PROFILES[name]
    if kbits is None:
        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0,
                                                       "downloadThroughput": -1, "uploadThroughput": -1})
    else:
        rate = kbits * 1000 / 8  # bytes per second
        cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": latency,
                                                       "downloadThroughput": rate, "uploadThroughput": rate})
    cdp.send("Emulation.setCPUThrottlingRate", {"rate": cpu})


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def raise_nofile(wanted=20_000):
    """Raise the soft open-file limit towards the hard limit (20,000 on these machines)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


_SERVE_HELP = None


def serve_options():
    """Options of ``chat-widget serve`` (other engineers add some; use them only when present)."""
    global _SERVE_HELP
    if _SERVE_HELP is None:
        _SERVE_HELP = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--help"], cwd=ROOT,
                                     capture_output=True, text=True).stdout
    return _SERVE_HELP


def start_server(runtime="micropython", port=None, origins=(), extra=(), env=None):
    """The real server (``python -m server.cli serve``) on 127.0.0.1; origins: allowed page origins."""
    port = port or free_port()
    args = ["--runtime", runtime, "--log-level", "warning"]
    for origin in (f"http://127.0.0.1:{port}", *origins):
        args += ["--allow-origin", origin]
    if "--store" in serve_options():
        args += ["--store", "memory"]  # no shared SQLite file between benchmark servers
    server = ServerProcess(*args, *extra, env=env)
    server.port = port
    return server.start(timeout=30)


BASELINE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>baseline</title><link rel="icon" href="data:,"></head>
<body><div id="chat-widget" data-state="loading"></div>
<script>
  var root = document.getElementById("chat-widget");
  var socket = new WebSocket("ws://127.0.0.1:%(port)d/ws?v=1");
  socket.onopen = function () { root.setAttribute("data-state", "connected"); };
  socket.onclose = function () { root.setAttribute("data-state", "reconnecting"); };
</script></body></html>
"""


EMBED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>a shop</title><link rel="icon" href="data:,"></head>
<body><h1>A shop on another site</h1><p>Lamps and rugs.</p>
%(snippet)s
</body></html>
"""


def embed_snippet(chat_port):
    """The one tag, pointing at the chat server: another origin (port) than the host page's, on the same
    site (127.0.0.1). A frame from another *site* runs in its own process, which the page's CDP session
    (and so the network emulation) does not reach: its requests would go unthrottled and look fast."""
    return f'<script src="http://127.0.0.1:{chat_port}/embed.js" async></script>'


def baseline_site(chat_port):
    """The minimal plain-JS page (the floor) on its own loopback port, opening the real server's /ws."""
    site = HostSite(cache_control="no-cache")
    site.page("/", BASELINE_PAGE % {"port": chat_port})
    return site.start()


def embed_site(chat_port):
    """A page of another site (http://127.0.0.1:A) with the one tag pointing at the chat server."""
    site = HostSite(cache_control="no-cache")
    site.page("/", EMBED_PAGE % {"snippet": embed_snippet(chat_port)})
    return site.start()


# Records when the widget first reaches "connected", in ms since the host page's navigation start: on a
# page with the snippet it opens the chat as soon as window.chatWidget exists (a visitor who opens at
# once) and listens to its statechange events; on the baseline page it watches #chat-widget.
CONNECTED_PROBE = """
(() => {
  if (window.top !== window) return;
  const opener = setInterval(() => {
    if (!window.chatWidget) return;
    clearInterval(opener);
    window.chatWidget.addEventListener("statechange", (event) => {
      if (event.detail.state === "connected" && window.__connectedAt === undefined) window.__connectedAt = performance.now();
    });
    window.chatWidget.open();
  }, 5);
  const seen = () => {
    const root = document.getElementById("chat-widget");
    if (root && root.getAttribute("data-state") === "connected" && window.__connectedAt === undefined) {
      window.__connectedAt = performance.now();
    }
  };
  new MutationObserver(seen).observe(document, {subtree: true, childList: true, attributes: true,
                                                attributeFilter: ["data-state"]});
})();
"""


class Visit:
    """Collects the bytes of every request of one page load (CDP Network.loadingFinished)."""

    def __init__(self, cdp):
        self.urls = {}
        self.bytes = {}
        self.cached = {}
        self.status = {}
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.responseReceived", self._received)
        cdp.on("Network.loadingFinished", self._finished)
        cdp.on("Network.requestServedFromCache", self._from_cache)

    def reset(self):
        self.urls, self.bytes, self.cached, self.status = {}, {}, {}, {}

    def _sent(self, event):
        self.urls[event["requestId"]] = event["request"]["url"]

    def _received(self, event):
        response = event["response"]
        self.status[event["requestId"]] = (response.get("status"), response.get("fromDiskCache", False)
                                           or response.get("fromPrefetchCache", False))

    def _from_cache(self, event):
        self.cached[event["requestId"]] = True

    def _finished(self, event):
        self.bytes[event["requestId"]] = event["encodedDataLength"]

    def files(self):
        """[(url, bytes on the wire, status, from cache)] in request order (data: URLs left out)."""
        rows = []
        for request_id, url in self.urls.items():
            if url.startswith("data:"):
                continue
            status, disk = self.status.get(request_id, (None, False))
            rows.append((url, self.bytes.get(request_id, 0), status, disk or self.cached.get(request_id, False)))
        return rows

    def total(self):
        return sum(size for _, size, _, _ in self.files())


def load_and_time(page, url, timeout_ms, reload=False):
    """Navigate (or reload) and return ms from navigation start to data-state="connected"."""
    if reload:
        page.reload(wait_until="commit")
    else:
        page.goto(url, wait_until="commit")
    # Functions, not expressions: the host pages' CSP has no 'unsafe-eval'.
    page.wait_for_function("() => window.__connectedAt !== undefined", timeout=timeout_ms, polling=20)
    return page.evaluate("() => window.__connectedAt")


def summary(values):
    """Median, min, max, quartiles and count of a list of numbers (None when empty)."""
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    if len(values) >= 4:
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    else:
        q1, q3 = values[0], values[-1]
    return {"median": statistics.median(values), "min": values[0], "max": values[-1], "q1": q1, "q3": q3,
            "n": len(values)}


def machine():
    """What the numbers were measured on."""
    meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0] if Path("/proc/meminfo").exists() else ""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "memory": meminfo.split(":", 1)[-1].strip(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": os.getloadavg(),
    }


def package_versions():
    versions = {}
    for name in ("quart", "uvicorn", "websockets", "playwright", "brotli", "hypercorn", "wsproto"):
        try:
            from importlib.metadata import version
            versions[name] = version(name)
        except Exception:
            pass
    for folder in ("node_modules/@pyscript/core", "node_modules/@micropython/micropython-webassembly-pyscript",
                   "node_modules/pyodide"):
        try:
            data = json.loads((ROOT / folder / "package.json").read_text())
            versions[data["name"]] = data["version"]
        except (OSError, ValueError, KeyError):
            pass
    try:
        versions["chromium"] = subprocess.run([chromium_path() or "chromium", "--version"], capture_output=True,
                                              text=True, timeout=20).stdout.strip()
    except Exception:
        pass
    return versions


def write_results(name, data):
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{name}-{stamp}.json"
    data = {"machine": machine(), "versions": package_versions(), **data}
    path.write_text(json.dumps(data, indent=2))
    (RESULTS / f"{name}-latest.json").write_text(json.dumps(data, indent=2))
    return path


def table(headers, rows):
    """A plain-text table (columns padded, numbers right-aligned)."""
    cells = [[str(h) for h in headers]] + [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        parts = []
        for i, cell in enumerate(row):
            numeric = index > 0 and cell[:1].isdigit() or cell[:1] == "-" and cell[1:2].isdigit()
            parts.append(cell.rjust(widths[i]) if numeric else cell.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
