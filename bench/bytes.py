"""Bytes on the wire per file, first visit and repeat visit, for each runtime's demo page.

A first visit is a fresh browser context (empty cache); the repeat visit is a reload in that context.
Sizes are CDP ``Network.loadingFinished.encodedDataLength``: compressed body plus response headers,
as they crossed the (loopback) wire; 0 for a file served from the browser's cache.

    .venv/bin/python bench/bytes.py                     # both runtimes
    .venv/bin/python bench/bytes.py --runtimes micropython

Writes bench/results/bytes-<time>.json (and bytes-latest.json).
"""

import argparse
import signal
import sys
from urllib.parse import urlsplit

from playwright.sync_api import sync_playwright

from common import launch_chromium, start_server, table, write_results
from connect import one_visit


def short(url):
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def main(argv=None):
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the servers on the way out
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtimes", default="micropython,pyodide")
    parser.add_argument("--smoke", action="store_true", help="micropython only (CI smoke)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    runtimes = ["micropython"] if args.smoke else [r for r in args.runtimes.split(",") if r]
    env = dict(item.split("=", 1) for item in args.server_env)
    results = {}
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        for runtime in runtimes:
            server = start_server(runtime, env=env)
            try:
                visit = one_visit(browser, server.url + "/", "loopback", runtime, warm=True)
            finally:
                server.stop()
            if "error" in visit:
                print(f"{runtime}: {visit['error']}", file=sys.stderr)
                results[runtime] = visit
                continue
            warm = {url: (size, status, cached) for url, size, status, cached in visit["warm_files"]}
            rows = []
            for url, size, status, _ in visit["cold_files"]:
                again = warm.get(url)
                repeat = "-" if again is None else ("cache" if again[2] and again[0] == 0 else f"{again[0]:,}")
                rows.append([short(url), f"{size:,}", status, repeat])
            rows.append(["total", f"{visit['cold_bytes']:,}", "", f"{visit['warm_bytes']:,}"])
            print(f"\n{runtime}: bytes on the wire (body + headers), first visit and repeat visit (reload)")
            print(table(["file", "first visit", "status", "repeat visit"], rows))
            results[runtime] = {
                "first_visit_bytes": visit["cold_bytes"], "repeat_visit_bytes": visit["warm_bytes"],
                "first_visit_files": [{"url": short(u), "bytes": s, "status": st} for u, s, st, _ in visit["cold_files"]],
                "repeat_visit_files": [{"url": short(u), "bytes": s, "status": st, "cached": c}
                                       for u, s, st, c in visit["warm_files"]],
            }
        browser.close()
    path = write_results("bytes", {"server_env": args.server_env, "runtimes": results})
    print(f"\nwrote {path.relative_to(path.parent.parent.parent)}")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
