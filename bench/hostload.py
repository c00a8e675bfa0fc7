"""What the one tag costs the site that embeds it: the host page's own ``load`` event with and without
the snippet, and when the launcher appears.

A host page on its own loopback port (http://127.0.0.1:A; a heading, text and a 60 KB image, like a
small shop page) is loaded cold (fresh context) in three variants, interleaved run by run:
``bare`` (no snippet), ``snippet`` (the one tag, async, pointing at the chat server at
http://127.0.0.1:B) and ``snippet-click`` (the same with ``data-load="click"``). For each run:
``load`` = the navigation entry's loadEventStart, ``launcher`` = when the launcher button was in the
page, ``idle`` = when the widget reported ``idle`` (its runtime loaded in the frame, nothing
connected), all in ms since navigation start.

    .venv/bin/python bench/hostload.py                   # 7 runs, loopback and 10mbit-40ms
    .venv/bin/python bench/hostload.py --runs 3 --profiles loopback
    .venv/bin/python bench/hostload.py --smoke

Prints medians, spreads and the ratio of each variant's load time to ``bare`` measured in the same
run; writes bench/results/hostload-<time>.json (and hostload-latest.json).
"""

import argparse
import signal
import sys
import time

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from common import (PROFILES, HostSite, apply_profile, free_port, launch_chromium, start_server, summary, table,
                    write_results)

VARIANTS = ("bare", "snippet", "snippet-click")
IMAGE = bytes(range(256)) * 240  # 60 KB of something: the host page's own weight

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>a shop</title><link rel="icon" href="data:,"></head>
<body><h1>A shop</h1><p>Lamps and hand-woven rugs, made to last.</p>
<img src="/photo.bin?%(variant)s" width="320" height="200" alt="">
%(snippet)s
</body></html>
"""

# Records when the launcher exists and when the widget says "idle" (ms since navigation start).
PROBE = """
(() => {
  if (window.top !== window) return;
  new MutationObserver(() => {
    if (window.__launcherAt !== undefined) return;
    for (const node of document.querySelectorAll("body > div, html > div")) {
      if (node.shadowRoot && node.shadowRoot.querySelector(".launcher")) { window.__launcherAt = performance.now(); return; }
    }
  }).observe(document, {subtree: true, childList: true});
  const watch = setInterval(() => {
    if (!window.chatWidget) return;
    clearInterval(watch);
    window.chatWidget.addEventListener("statechange", (event) => {
      if (event.detail.state === "idle" && window.__idleAt === undefined) window.__idleAt = performance.now();
    });
  }, 5);
})();
"""


def host_pages(chat_port):
    """The host site: ``/<variant>`` is the page of that variant, ``/photo.bin`` its image."""
    site = HostSite()
    base = f"http://127.0.0.1:{chat_port}/embed.js"  # same site, another origin: see common.embed_snippet
    snippets = {"bare": "", "snippet": f'<script src="{base}" async></script>',
                "snippet-click": f'<script src="{base}" async data-load="click"></script>'}
    for name, tag in snippets.items():
        site.page(f"/{name}", PAGE % {"variant": name, "snippet": tag})
    site.page("/photo.bin", IMAGE, content_type="application/octet-stream")
    return site.start()


def one_load(browser, url, profile, variant):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.add_init_script(PROBE)
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        apply_profile(cdp, profile)
        page.goto(url, wait_until="load", timeout=60_000)
        result = {"load": page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventStart")}
        if variant != "bare":
            page.wait_for_function("() => window.__launcherAt !== undefined", timeout=30_000)
            result["launcher"] = page.evaluate("() => window.__launcherAt")
        if variant == "snippet":
            page.wait_for_function("() => window.__idleAt !== undefined", timeout=60_000, polling=20)
            result["idle"] = page.evaluate("() => window.__idleAt")
        return result
    except PlaywrightError as error:
        return {"error": str(error).splitlines()[0]}
    finally:
        context.close()


def fmt(value):
    return "" if value is None else f"{value:,.0f}"


def main(argv=None):
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--profiles", default="loopback,10mbit-40ms")
    parser.add_argument("--smoke", action="store_true", help="1 run, loopback (CI smoke)")
    parser.add_argument("--label", default="")
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.profiles = 1, "loopback"
    profiles = [p for p in args.profiles.split(",") if p]
    unknown = [p for p in profiles if p not in PROFILES]
    if unknown:
        parser.error(f"unknown profile: {', '.join(unknown)}")
    chat_port = free_port()
    site = host_pages(chat_port)
    server = start_server("micropython", port=chat_port, origins=[site.origin])
    samples = {}
    started = time.time()
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            for run in range(args.runs):
                for profile in profiles:
                    for variant in VARIANTS:
                        result = one_load(browser, f"{site.origin}/{variant}", profile, variant)
                        samples.setdefault((profile, variant), []).append(result)
                        print(f"run {run + 1}/{args.runs} {profile:12} {variant:13} load {fmt(result.get('load')):>6} ms"
                              f"  launcher {fmt(result.get('launcher')):>6}  idle {fmt(result.get('idle')):>6}"
                              f"  {result.get('error', '')}", file=sys.stderr, flush=True)
            browser.close()
    finally:
        server.stop()
        site.stop()
    rows, stats = [], {}
    for profile in profiles:
        bare = summary([r.get("load") for r in samples.get((profile, "bare"), [])])
        for variant in VARIANTS:
            runs = samples.get((profile, variant), [])
            cell = {key: summary([r.get(key) for r in runs]) for key in ("load", "launcher", "idle")}
            cell["errors"] = sum(1 for r in runs if "error" in r)
            stats[f"{profile}/{variant}"] = cell
            load = cell["load"]
            rows.append([profile, variant, fmt(load and load["median"]),
                         f"{fmt(load['min'])}-{fmt(load['max'])}" if load else "",
                         f"{load['median'] / bare['median']:.2f}x" if load and bare else "",
                         fmt(cell["launcher"] and cell["launcher"]["median"]), fmt(cell["idle"] and cell["idle"]["median"]),
                         cell["errors"] or ""])
    print(f"\nhostload: {args.runs} cold load(s) per cell, medians in ms since navigation start; {time.time() - started:.0f} s")
    print(table(["profile", "variant", "load", "min-max", "vs bare", "launcher", "idle", "errors"], rows))
    path = write_results("hostload", {"label": args.label, "runs": args.runs, "stats": stats,
                                      "samples": {f"{p}/{v}": r for (p, v), r in samples.items()}})
    print(f"\nwrote {path.relative_to(path.parent.parent.parent)}")
    failed = sum(1 for runs in samples.values() for r in runs if "error" in r)
    return 1 if failed and args.smoke else 0


if __name__ == "__main__":
    sys.exit(main())
