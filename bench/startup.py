"""A fresh server's first answers: from spawning the process to the first 200s, cold and warm asset cache.

For each start command (``chat-widget serve``, and ``python -m server.cli serve`` as the README runs
it) and each asset cache (``cold``: an empty folder, so the compressed copies are being made while the
first visitors arrive; ``warm``: a folder filled once by ``scripts/compress-assets``), each run spawns
the server and measures, in ms from the spawn:

- ``page``: the first 200 on ``/`` (polled every 5 ms from the spawn on);
- ``frame``: the widget's frame document (``/embed/frame``) right after;
- ``runtime``: every file the frame preloads (core.js and its chunks, micropython.wasm / pyodide.asm.wasm
  ...), fetched six at a time like a browser with ``Accept-Encoding: br, gzip``; the table gives the
  time, the bytes received and how many came uncompressed (no copy yet);
- ``busy``: then ``/`` again every 50 ms for ``--probe-seconds``, while the compression thread works
  (cold): the median and worst answer time tell whether compressing starves requests.

``--phases`` adds where the start-up time goes, measured in a child process that starts the server
the way ``server.cli`` does with timers around each step (Python imports, config, the consultant's
knowledge index, the rest of app creation, the start-up hooks including the frame's render, uvicorn's
bind), and the biggest imports of ``python -X importtime``.

    .venv/bin/python bench/startup.py                          # 5 runs, micropython, both commands, cold+warm
    .venv/bin/python bench/startup.py --runs 7 --runtimes micropython,pyodide --phases
    .venv/bin/python bench/startup.py --root /tmp/base15 --label before   # another checkout (its .venv)

Runs are interleaved (run 1 of every cell, then run 2, ...). Writes bench/results/startup-<time>.json.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, free_port, summary, table, write_results

COMMANDS = ("chat-widget", "python-m")
CACHES = ("cold", "warm")
PRELOAD = re.compile(r"""<link rel="(?:modulepreload|preload)"[^>]*?href="([^"]+)\"""")
BROWSER_CONNECTIONS = 6


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--runtimes", default="micropython", help="comma-separated: micropython, pyodide")
    parser.add_argument("--commands", default=",".join(COMMANDS), help=f"comma-separated, of {', '.join(COMMANDS)}")
    parser.add_argument("--caches", default=",".join(CACHES), help="comma-separated: cold, warm")
    parser.add_argument("--probe-seconds", type=float, default=2.0, help="requests to / during compression (s)")
    parser.add_argument("--phases", action="store_true", help="also split the start-up time (child process)")
    parser.add_argument("--root", default=str(ROOT), help="checkout to start (its .venv); default this one")
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)
    for name, allowed in (("runtimes", ("micropython", "pyodide")), ("commands", COMMANDS), ("caches", CACHES)):
        values = [v for v in getattr(args, name).split(",") if v]
        wrong = [v for v in values if v not in allowed]
        if wrong:
            parser.error(f"--{name}: unknown {', '.join(wrong)}")
        setattr(args, name, values)
    args.root = Path(args.root).resolve()
    return args


def command_line(root, command, runtime, port):
    venv = root / ".venv" / "bin"
    start = [str(venv / "chat-widget")] if command == "chat-widget" else [str(venv / "python"), "-m", "server.cli"]
    return [*start, "serve", "--host", "127.0.0.1", "--port", str(port), "--runtime", runtime,
            "--store", "memory", "--log-level", "warning"]


def get(port, path, timeout=10.0):
    """(status, body bytes as received, Content-Encoding) of one GET."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Accept-Encoding": "br, gzip"})
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("Content-Encoding")
    finally:
        connection.close()


def first_page(port, started, deadline_s=30.0):
    """ms from ``started`` to the first 200 on ``/`` (connection refused until uvicorn has bound)."""
    while time.perf_counter() - started < deadline_s:
        try:
            if get(port, "/", timeout=5.0)[0] == 200:
                return (time.perf_counter() - started) * 1000
        except OSError:
            pass
        time.sleep(0.005)
    return None


def decoded(body, encoding):
    if encoding == "br":
        import brotli

        return brotli.decompress(body)
    if encoding == "gzip":
        import gzip

        return gzip.decompress(body)
    return body


def one_start(args, command, runtime, cache_dir):
    """Spawn, measure, stop: one sample."""
    port = free_port()
    env = {**os.environ, "CHAT_WIDGET_ASSET_CACHE": str(cache_dir), "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(command_line(args.root, command, runtime, port), cwd=args.root, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    sample = {}
    try:
        sample["page"] = first_page(port, started)
        if sample["page"] is None:
            sample["error"] = "no 200 on / within 30 s: " + (process.stderr.read1(2000).decode(errors="replace")
                                                             if process.poll() is not None else "still starting")
            return sample
        status, body, encoding = get(port, "/embed/frame")
        sample["frame"] = (time.perf_counter() - started) * 1000
        if status != 200:
            sample["error"] = f"frame: HTTP {status}"
            return sample
        urls = PRELOAD.findall(decoded(body, encoding).decode())
        fetch_started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(BROWSER_CONNECTIONS) as pool:
            answers = list(pool.map(lambda url: get(port, url.replace("&amp;", "&")), urls))
        sample["runtime"] = (time.perf_counter() - fetch_started) * 1000
        sample["runtime_files"] = len(urls)
        sample["runtime_bytes"] = sum(len(body) for _, body, _ in answers)
        sample["runtime_uncompressed"] = sum(1 for _, _, encoding in answers if not encoding)
        sample["runtime_errors"] = sum(1 for status, _, _ in answers if status != 200)
        busy = []
        probe_end = time.perf_counter() + args.probe_seconds
        while time.perf_counter() < probe_end:
            before = time.perf_counter()
            get(port, "/")
            busy.append((time.perf_counter() - before) * 1000)
            time.sleep(max(0.0, 0.05 - (time.perf_counter() - before)))
        sample["busy_median"] = summary(busy)["median"] if busy else None
        sample["busy_max"] = max(busy) if busy else None
        return sample
    except OSError as error:
        sample["error"] = str(error)
        return sample
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
        process.stderr.close()


def fill_cache(root, runtime, cache_dir):
    """The warm cache: every compressed copy made ahead of time, as scripts/compress-assets does."""
    env = {**os.environ, "CHAT_WIDGET_ASSET_CACHE": str(cache_dir)}
    subprocess.run([str(root / ".venv" / "bin" / "python"), "scripts/compress-assets", "--runtime", runtime],
                   cwd=root, env=env, check=True, stdout=subprocess.DEVNULL)


# Runs in the server's own interpreter: the steps of server.cli's `serve` with a timer around each.
PHASES_CHILD = r"""
import asyncio, json, sys, time
marks = {}
started = time.perf_counter()
import server.cli as cli
marks["import server.cli"] = time.perf_counter() - started
step = time.perf_counter()
import server.app as app_module
marks["import server.app"] = time.perf_counter() - step
import server.consultants as consultants
from server.assets import routes
from server.config import Config

def timed(name, function, is_async=False):
    if is_async:
        async def wrapper(*args, **kwargs):
            step = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                marks[name] = marks.get(name, 0) + time.perf_counter() - step
    else:
        def wrapper(*args, **kwargs):
            step = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                marks[name] = marks.get(name, 0) + time.perf_counter() - step
    return wrapper

consultants.build = timed("consultant (knowledge index)", consultants.build)
routes.render_frame = timed("frame render", routes.render_frame, is_async=True)
step = time.perf_counter()
config = Config.from_environment(host="127.0.0.1", port=0, runtime=sys.argv[1], store="memory", log_level="warning")
marks["config"] = time.perf_counter() - step

async def main():
    step = time.perf_counter()
    app = app_module.create_app(config)
    marks["create_app (all)"] = time.perf_counter() - step
    server = cli.ChatServer(cli.uvicorn_config(app, config))
    step = time.perf_counter()
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.001)
    marks["start-up hooks + uvicorn bind (all)"] = time.perf_counter() - step
    marks["total to listening"] = time.perf_counter() - started
    server.should_exit = True
    await serving

asyncio.run(main())
print(json.dumps({name: value * 1000 for name, value in marks.items()}))
"""


def phases(root, runtime, cache_dir):
    """{phase: ms} of one start in a child process; and the biggest top-level imports (importtime)."""
    python = str(root / ".venv" / "bin" / "python")
    env = {**os.environ, "CHAT_WIDGET_ASSET_CACHE": str(cache_dir)}
    done = subprocess.run([python, "-c", PHASES_CHILD, runtime], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    marks = json.loads(lines[-1]) if lines else {"error": done.stderr[-500:]}
    trace = subprocess.run([python, "-X", "importtime", "-c", "import server.cli, server.app"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=120).stderr
    imports = {}
    for line in trace.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( *)(\S+)", line)
        if match and len(match.group(2)) <= 3:  # the top two levels: what server.* pulls in directly
            imports[match.group(3)] = int(match.group(1)) / 1000
    return marks, dict(sorted(imports.items(), key=lambda item: -item[1])[:12])


def fmt(value):
    return "" if value is None else f"{value:,.0f}"


def cell(values):
    s = summary(values)
    return (fmt(s["median"]), f"{fmt(s['min'])}-{fmt(s['max'])}") if s else ("-", "")


def main(argv=None):
    args = parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="chat-widget-startup-"))
    samples, result = {}, {}
    try:
        warm_dirs = {}
        if "warm" in args.caches:
            for runtime in args.runtimes:
                warm_dirs[runtime] = scratch / f"warm-{runtime}"
                print(f"filling the warm cache for {runtime} (scripts/compress-assets) ...", file=sys.stderr, flush=True)
                fill_cache(args.root, runtime, warm_dirs[runtime])
        started = time.time()
        cells = [(r, c, k) for r in args.runtimes for c in args.commands for k in args.caches]
        for run in range(args.runs):
            for runtime, command, cache in cells:
                cache_dir = warm_dirs[runtime] if cache == "warm" else scratch / f"cold-{run}-{runtime}-{command}"
                sample = one_start(args, command, runtime, cache_dir)
                samples.setdefault((runtime, command, cache), []).append(sample)
                print(f"run {run + 1}/{args.runs} {runtime:11} {command:11} {cache:4}  page {fmt(sample.get('page')):>6} ms"
                      f"  frame {fmt(sample.get('frame')):>6}  runtime {fmt(sample.get('runtime')):>6} ms"
                      f" {sample.get('runtime_bytes', 0) / 1000:8.1f} KB ({sample.get('runtime_uncompressed', '-')} raw)"
                      f"  busy {fmt(sample.get('busy_median'))}/{fmt(sample.get('busy_max'))} ms"
                      f"  {sample.get('error', '')}", file=sys.stderr, flush=True)
        rows, stats = [], {}
        for (runtime, command, cache), runs in samples.items():
            ok = [s for s in runs if "error" not in s]
            key = f"{runtime}/{command}/{cache}"
            stats[key] = {name: summary([s.get(name) for s in ok]) for name in
                          ("page", "frame", "runtime", "runtime_bytes", "runtime_uncompressed", "busy_median", "busy_max")}
            stats[key]["errors"] = len(runs) - len(ok)
            bytes_ = summary([s.get("runtime_bytes") for s in ok])
            raw = summary([s.get("runtime_uncompressed") for s in ok])
            rows.append([runtime, command, cache, *cell([s.get("page") for s in ok]), *cell([s.get("frame") for s in ok]),
                         *cell([s.get("runtime") for s in ok]),
                         f"{bytes_['median'] / 1000:,.0f}" if bytes_ else "", fmt(raw["median"]) if raw else "",
                         fmt(summary([s.get("busy_median") for s in ok])["median"]) if ok else "",
                         fmt(max(s.get("busy_max") or 0 for s in ok)) if ok else "", (len(runs) - len(ok)) or ""])
        print()
        print(f"startup: {args.runs} run(s) per cell, medians and min-max, ms from spawn; {args.root}; "
              f"{time.time() - started:.0f} s")
        print(table(["runtime", "command", "cache", "first /", "min-max", "frame", "min-max", "runtime files",
                     "min-max", "KB", "raw files", "busy med", "busy max", "errors"], rows))
        result = {"label": args.label, "root": str(args.root), "runs": args.runs, "stats": stats,
                  "samples": {"/".join(key): runs for key, runs in samples.items()}}
        if args.phases:
            result["phases"] = {}
            for runtime in args.runtimes:
                measured = [phases(args.root, runtime, scratch / f"phases-{run}") for run in range(args.runs)]
                names = list(measured[0][0])
                marks = {name: summary([m.get(name) for m, _ in measured]) for name in names}
                imports = {name: summary([i.get(name) for _, i in measured]) for name in measured[0][1]}
                result["phases"][runtime] = {"marks": marks, "imports": imports}
                print(f"\nwhere the start-up goes ({runtime}, cold cache, median of {args.runs} child processes, ms):")
                print(table(["step", "median", "min-max"], [[name, *cell([m.get(name) for m, _ in measured])]
                                                            for name in names]))
                print("\nbiggest imports (python -X importtime, cumulative, top two levels):")
                print(table(["module", "median ms"], [[name, fmt(s["median"]) if s else ""] for name, s in imports.items()]))
        path = write_results("startup", result)
        print(f"\nwrote {path.relative_to(path.parent.parent.parent)}")
        return 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
