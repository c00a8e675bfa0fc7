"""Where a Pyodide widget's start goes, with and without the memory snapshot (the pyodide_snapshot experiment).

Opens the widget's frame (``/embed/frame``) in a fresh headless Chromium context per run, under one of
bench/common.py's network profiles, and reads from the page (ms from navigation start):

- ``bytes in``: the last runtime file's ``responseEnd`` (resource timing): the network part;
- ``python asked``: when PyScript requests the widget's Python (the bundle's ``startTime``): Pyodide
  and PyScript's own start are done;
- ``connected``: ``data-state="connected"`` (polled every 20 ms).

The two servers (plain Pyodide; ``CHAT_WIDGET_PYODIDE_SNAPSHOT=1``) run side by side and the runs
alternate between them. The snapshot must exist already (``scripts/pyodide-snapshot``), or the second
server serves plain Pyodide until it has made it (its rows then say so: no snapshot.bin in the bytes).

    .venv/bin/python bench/pyodide_phases.py --runs 7 --profile 50mbit-20ms
"""

import argparse
import sys

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from common import PROFILES, Visit, apply_profile, launch_chromium, start_server, summary, table, write_results

VARIANTS = {"plain": {}, "snapshot": {"CHAT_WIDGET_PYODIDE_SNAPSHOT": "1"}}
MARKS = """() => {
  const files = performance.getEntriesByType("resource");
  const bundle = files.find((entry) => entry.name.includes("main.bundle.py"));
  return {
    bytes_in: Math.max(...files.filter((entry) => entry.name.includes("/vendor/")).map((entry) => entry.responseEnd)),
    python_asked: bundle ? bundle.startTime : null,
    snapshot_used: files.some((entry) => entry.name.endsWith("/snapshot.bin")),
  };
}"""


def one_run(browser, url, profile):
    context = browser.new_context()
    try:
        page = context.new_page()
        cdp = context.new_cdp_session(page)
        cdp.send("Network.enable")
        visit = Visit(cdp)
        apply_profile(cdp, profile)
        page.goto(url, wait_until="commit")
        handle = page.wait_for_function(
            """() => document.querySelector('[data-state="connected"]') ? performance.now() : false""",
            timeout=120_000, polling=20)
        sample = {"connected": handle.json_value(), **page.evaluate(MARKS)}
        try:
            page.wait_for_load_state("networkidle", timeout=3000)
        except PlaywrightError:
            pass
        sample["bytes"] = visit.total()
        return sample
    except PlaywrightError as error:
        return {"error": str(error).splitlines()[0]}
    finally:
        context.close()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--profile", default="50mbit-20ms", choices=list(PROFILES))
    args = parser.parse_args(argv)
    servers = {}
    try:
        for name, env in VARIANTS.items():
            servers[name] = start_server("pyodide", env=env)
        samples = {name: [] for name in VARIANTS}
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            for run in range(args.runs):
                for name, server in servers.items():
                    sample = one_run(browser, server.url + "/embed/frame", args.profile)
                    samples[name].append(sample)
                    print(f"run {run + 1}/{args.runs} {name:9} " + "  ".join(
                        f"{key} {value:,.0f}" if isinstance(value, (int, float)) and not isinstance(value, bool)
                        else f"{key} {value}" for key, value in sample.items()), file=sys.stderr, flush=True)
            browser.close()
        rows, stats = [], {}
        for name, runs in samples.items():
            ok = [s for s in runs if "error" not in s]
            stats[name] = {key: summary([s.get(key) for s in ok]) for key in ("bytes_in", "python_asked", "connected",
                                                                               "bytes")}
            stats[name]["snapshot_used"] = sum(1 for s in ok if s.get("snapshot_used"))
            stats[name]["errors"] = len(runs) - len(ok)
            cells = []
            for key in ("bytes_in", "python_asked", "connected"):
                s = stats[name][key]
                cells += [f"{s['median']:,.0f}", f"{s['min']:,.0f}-{s['max']:,.0f}"] if s else ["-", ""]
            size = stats[name]["bytes"]
            rows.append([name, *cells, f"{size['median'] / 1000:,.0f}" if size else "", stats[name]["snapshot_used"],
                         stats[name]["errors"] or ""])
        print(f"\npyodide phases: {args.runs} run(s), {args.profile}, ms from navigation start, medians")
        print(table(["variant", "bytes in", "min-max", "python asked", "min-max", "connected", "min-max", "KB wire",
                     "snapshot used", "errors"], rows))
        path = write_results("pyodide-phases", {"profile": args.profile, "runs": args.runs, "stats": stats,
                                                "samples": samples})
        print(f"\nwrote {path.relative_to(path.parent.parent.parent)}")
        return 0
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
