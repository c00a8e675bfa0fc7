"""Time to ``data-state="connected"`` in headless Chromium against the real server, cold and warm.

Variants: the demo page with the MicroPython widget, with the Pyodide widget, ``embed`` (a host page on
another origin, http://127.0.0.1:A, with the one tag pointing at the MicroPython server at
http://127.0.0.1:B: the embedded case; same site, so that the network emulation reaches the frame,
see common.embed_snippet), and a minimal plain-JS page that opens the same WebSocket (the
floor, served by a tiny loopback server on another port whose origin the chat server allows). Widget
pages are opened as soon as ``window.chatWidget`` exists (a visitor who opens the chat at once). Network profiles through CDP ``Network.emulateNetworkConditions`` (and
``Emulation.setCPUThrottlingRate`` 4 for ``10mbit-cpu4x``). Cold = a fresh browser context (empty
cache); warm = a reload in that context. Runs are interleaved (run 1 of every variant, then run 2, ...)
so that machine noise spreads over all of them.

    .venv/bin/python bench/connect.py                      # all profiles, all variants, 5 runs
    .venv/bin/python bench/connect.py --runs 7 --profiles loopback,10mbit-40ms --runtimes micropython
    .venv/bin/python bench/connect.py --smoke              # 1 run, loopback, micropython + baseline (CI)

Prints a table of medians, spreads (min-max and IQR) and ratios to the baseline; writes
bench/results/connect-<time>.json (and connect-latest.json) with every sample and per-file bytes.
"""

import argparse
import signal
import sys
import time

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from common import (CONNECTED_PROBE, PROFILES, Visit, apply_profile, baseline_site, embed_site, free_port, launch_chromium,
                    load_and_time, start_server, summary, table, write_results)

RUNTIMES = ("micropython", "pyodide")
TIMEOUT_MS = {"micropython": 30_000, "pyodide": 120_000, "embed": 30_000, "baseline": 15_000}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="cold+warm loads per variant and profile (default 5)")
    parser.add_argument("--profiles", default=",".join(PROFILES), help=f"comma-separated, of {', '.join(PROFILES)}")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help="comma-separated: micropython, pyodide")
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain-JS page")
    parser.add_argument("--no-embed", action="store_true", help="skip the host page on another site")
    parser.add_argument("--no-warm", action="store_true", help="cold loads only")
    parser.add_argument("--smoke", action="store_true", help="1 run, loopback, micropython + baseline (CI smoke)")
    parser.add_argument("--label", default="", help="free text stored with the results (e.g. 'before')")
    parser.add_argument("--init-script", default=None, metavar="FILE",
                        help="JavaScript run before the page's own scripts in the widget pages (experiments)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment for the chat servers (experiments, e.g. CHAT_WIDGET_PYTHON_DELIVERY=files)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.profiles, args.runtimes = 1, "loopback", "micropython"
    args.profiles = [p for p in args.profiles.split(",") if p]
    args.runtimes = [r for r in args.runtimes.split(",") if r]
    unknown = [p for p in args.profiles if p not in PROFILES] + [r for r in args.runtimes if r not in RUNTIMES]
    if unknown:
        parser.error(f"unknown profile/runtime: {', '.join(unknown)}")
    return args


def settle(page, timeout_ms=3000):
    """Wait for requests still in flight after 'connected' (so their bytes are counted)."""
    try:
        page.wait_for_load_state("networkidle", timeout=timeout_ms)
    except PlaywrightError:
        pass


def one_visit(browser, url, profile, variant, warm, init_script=None):
    """Cold load in a fresh context, then (if warm) a reload: {'cold': ms, 'warm': ms, bytes and files}."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.add_init_script(CONNECTED_PROBE)
        if init_script and variant != "baseline":
            page.add_init_script(init_script)
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        cdp.send("Network.setCacheDisabled", {"cacheDisabled": False})
        visit = Visit(cdp)
        apply_profile(cdp, profile)
        result = {}
        timeout = TIMEOUT_MS[variant] * (4 if profile == "slow4g" else 1)
        try:
            result["cold"] = load_and_time(page, url, timeout)
        except PlaywrightError as error:
            result["error"] = f"cold: {str(error).splitlines()[0]}"
            return result
        settle(page)
        result["cold_bytes"], result["cold_files"] = visit.total(), visit.files()
        if warm:
            visit.reset()
            try:
                result["warm"] = load_and_time(page, url, timeout, reload=True)
            except PlaywrightError as error:
                result["error"] = f"warm: {str(error).splitlines()[0]}"
                return result
            settle(page)
            result["warm_bytes"], result["warm_files"] = visit.total(), visit.files()
        return result
    finally:
        context.close()


def fmt_ms(value):
    return "" if value is None else f"{value:,.0f}"


def report(samples, profiles, variants, phases):
    rows = []
    stats = {}
    for profile in profiles:
        for phase in phases:
            base = summary([s.get(phase) for s in samples.get((profile, "baseline"), [])])
            for variant in variants:
                runs = samples.get((profile, variant), [])
                s = summary([r.get(phase) for r in runs])
                kb = summary([r.get(f"{phase}_bytes") for r in runs])
                errors = sum(1 for r in runs if "error" in r)
                stats[f"{profile}/{variant}/{phase}"] = {"ms": s, "bytes": kb, "errors": errors}
                if s is None:
                    rows.append([profile, variant, phase, "-", "", "", "", "", errors])
                    continue
                ratio = f"{s['median'] / base['median']:.1f}x" if base and variant != "baseline" else ""
                rows.append([profile, variant, phase, fmt_ms(s["median"]), f"{fmt_ms(s['min'])}-{fmt_ms(s['max'])}",
                             f"{fmt_ms(s['q1'])}-{fmt_ms(s['q3'])}", ratio,
                             f"{kb['median'] / 1000:,.1f}" if kb else "", errors or ""])
    print(table(["profile", "variant", "load", "median ms", "min-max", "IQR", "vs JS", "KB wire", "errors"], rows))
    return stats


def main(argv=None):
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the servers on the way out
    args = parse_args(argv)
    embed = "micropython" in args.runtimes and not args.no_embed
    variants = list(args.runtimes) + (["embed"] if embed else []) + ([] if args.no_baseline else ["baseline"])
    phases = ["cold"] + ([] if args.no_warm else ["warm"])
    servers, baseline, host, chat_port = {}, None, None, free_port()
    try:
        # The baseline page and the embedding host page live on their own ports; the first chat server
        # (on chat_port) must allow their origins.
        if "baseline" in variants:
            baseline = baseline_site(chat_port)
        if embed:
            host = embed_site(chat_port)
        origins = [site.origin for site in (baseline, host) if site]
        for runtime in sorted(args.runtimes or ["micropython"], key=lambda name: name != "micropython"):
            port = chat_port if not servers else None
            env = dict(item.split("=", 1) for item in args.server_env)
            servers[runtime] = start_server(runtime, port=port, origins=origins, env=env)
        urls = {runtime: server.url + "/" for runtime, server in servers.items()}
        if baseline:
            urls["baseline"] = baseline.origin + "/"
        if host:
            urls["embed"] = host.origin + "/"
        init_script = open(args.init_script).read() if args.init_script else None
        samples = {}
        started = time.time()
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            for run in range(args.runs):
                for profile in args.profiles:
                    for variant in variants:
                        result = one_visit(browser, urls[variant], profile, variant, not args.no_warm, init_script)
                        samples.setdefault((profile, variant), []).append(result)
                        print(f"run {run + 1}/{args.runs} {profile:13} {variant:12} cold {fmt_ms(result.get('cold')):>7} ms"
                              f"  warm {fmt_ms(result.get('warm')):>7} ms  {result.get('cold_bytes', 0) / 1000:8.1f} KB"
                              f" / {result.get('warm_bytes', 0) / 1000:6.1f} KB  {result.get('error', '')}",
                              file=sys.stderr, flush=True)
            browser.close()
        print()
        print(f"connect: {args.runs} run(s) per cell, medians; cold = fresh context, warm = reload; "
              f"{time.time() - started:.0f} s")
        stats = report(samples, args.profiles, variants, phases)
        path = write_results("connect", {
            "label": args.label, "server_env": args.server_env, "init_script": args.init_script, "runs": args.runs, "profiles": {p: PROFILES[p] for p in args.profiles},
            "stats": stats,
            "samples": {f"{p}/{v}": runs for (p, v), runs in samples.items()},
        })
        print(f"\nwrote {path.relative_to(path.parent.parent.parent)}")
        failed = sum(1 for runs in samples.values() for r in runs if "error" in r)
        return 1 if failed and args.smoke else 0
    finally:
        for server in servers.values():
            server.stop()
        for site in (baseline, host):
            if site:
                site.stop()


if __name__ == "__main__":
    sys.exit(main())
