"""How fast the widget comes back: after a server restart on the same port, and after the browser goes back online.

Scenarios (headless Chromium, loopback, the real server in a subprocess):

- ``restart-kill``: the server is killed (SIGKILL: the browser sees 1006), stays down ``--downtime``
  seconds, and is started again on the same port. Measured: from the new server accepting (it printed
  its URL) to ``data-state="connected"``. The widget's backoff (full jitter, base 0.75 s) sets this.
- ``restart-term``: the same with a graceful stop (SIGTERM: the server closes sockets with 1012).
- ``offline``: ``context.set_offline(True)``, wait for state ``offline``, then ``set_offline(False)``;
  measured from that call to ``connected`` (the widget reconnects at once on ``online``).

Also recorded: from the server going down to the widget leaving ``connected`` (detection).

    .venv/bin/python bench/reconnect.py [--runs 5] [--runtime micropython] [--downtime 1.0]
    .venv/bin/python bench/reconnect.py --smoke

Writes bench/results/reconnect-<time>.json (and reconnect-latest.json).
"""

import argparse
import signal
import sys
import time

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

from common import launch_chromium, start_server, summary, table, write_results

# Every data-state change with its wall-clock time (ms since the epoch, comparable with time.time()),
# recorded inside the widget's frame (init scripts run in every frame).
STATES_PROBE = """
(() => {
  window.__states = [];
  let last = null;
  const seen = () => {
    const root = document.getElementById("chat-widget");
    const state = root && root.getAttribute("data-state");
    if (state && state !== last) { last = state; window.__states.push([state, Date.now()]); }
  };
  new MutationObserver(seen).observe(document, {subtree: true, childList: true, attributes: true,
                                                attributeFilter: ["data-state"]});
})();
"""


def states(page):
    return page.frame(name="chat-widget").evaluate("() => window.__states")


def wait_state(page, since_ms, wanted, timeout):
    """Wall-clock ms when data-state first became one of ``wanted`` at or after since_ms."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for state, at in states(page):
            if at >= since_ms and state in wanted:
                return at
        time.sleep(0.01)
    raise TimeoutError(f"no {wanted} within {timeout} s; states: {states(page)[-5:]}")


def restart_run(page, server, how, downtime, timeout):
    stopped = time.time() * 1000
    if how == "kill":
        server.kill()
    else:
        server.terminate()
    left = wait_state(page, stopped, ("reconnecting", "connecting", "offline", "failed"), timeout)
    time.sleep(max(0.0, downtime - (time.time() * 1000 - stopped) / 1000))
    server.start(timeout=30)
    ready = time.time() * 1000
    # The server accepts a moment before it prints its URL: a retry landing in between is back at once.
    connected = wait_state(page, left, ("connected",), timeout)
    return {"detect_ms": left - stopped, "ms": max(0.0, connected - ready), "down_s": (ready - stopped) / 1000}


def offline_run(page, context, timeout):
    started = time.time() * 1000
    context.set_offline(True)
    wait_state(page, started, ("offline",), timeout)
    time.sleep(0.5)
    back = time.time() * 1000
    context.set_offline(False)
    connected = wait_state(page, back, ("connected",), timeout)
    return {"ms": connected - back}


def main(argv=None):
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the servers on the way out
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--runtime", default="micropython", choices=["micropython", "pyodide"])
    parser.add_argument("--downtime", type=float, default=1.0, help="seconds the server stays down (default 1)")
    parser.add_argument("--scenarios", default="restart-kill,restart-term,offline")
    parser.add_argument("--smoke", action="store_true", help="1 run of two scenarios (CI smoke)")
    args = parser.parse_args(argv)
    if args.smoke:
        # A kill and going offline exercise both ways back; the graceful restart (1012) is covered by
        # e2e/test_connection_faults.py, and the smoke run is in every test run.
        args.runs, args.scenarios = 1, "restart-kill,offline"
    scenarios = [s for s in args.scenarios.split(",") if s]
    timeout = 60 if args.runtime == "pyodide" else 40
    samples = {name: [] for name in scenarios}
    server = start_server(args.runtime)
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            context = browser.new_context()
            page = context.new_page()
            page.add_init_script(STATES_PROBE)
            page.goto(server.url + "/")
            page.get_by_role("button", name="Chat with us").click()  # the widget connects once opened
            page.frame_locator('iframe[name="chat-widget"]').locator('#chat-widget[data-state="connected"]').wait_for(
                timeout=timeout * 1000)
            for run in range(args.runs):
                for name in scenarios:
                    # Each scenario starts from a connection that has stayed up 5 s (the attempt
                    # counter resets then), so every run sees the same backoff.
                    page.frame(name="chat-widget").wait_for_selector('#chat-widget[data-state="connected"]',
                                                                     timeout=timeout * 1000)
                    time.sleep(5.5)
                    try:
                        if name == "offline":
                            result = offline_run(page, context, timeout)
                        else:
                            result = restart_run(page, server, name.split("-")[1], args.downtime, timeout)
                    except (TimeoutError, PlaywrightError) as error:
                        result = {"error": str(error).splitlines()[0]}
                    samples[name].append(result)
                    print(f"run {run + 1}/{args.runs} {name:13} {result}", file=sys.stderr, flush=True)
            browser.close()
    finally:
        server.stop()
    rows, stats = [], {}
    for name in scenarios:
        s = summary([r.get("ms") for r in samples[name]])
        d = summary([r.get("detect_ms") for r in samples[name]])
        errors = sum(1 for r in samples[name] if "error" in r)
        stats[name] = {"ms": s, "detect_ms": d, "errors": errors}
        if s is None:
            rows.append([name, "-", "", "", "", errors])
            continue
        rows.append([name, f"{s['median']:,.0f}", f"{s['min']:,.0f}-{s['max']:,.0f}", f"{s['q1']:,.0f}-{s['q3']:,.0f}",
                     f"{d['median']:,.0f}" if d else "", errors or ""])
    print(f"\nreconnect ({args.runtime}, {args.runs} run(s), server down {args.downtime:.1f} s): ms to 'connected'")
    print(table(["scenario", "median ms", "min-max", "IQR", "detect ms", "errors"], rows))
    print("restart-*: from the restarted server accepting; offline: from set_offline(False); "
          "detect: from the stop to the widget leaving 'connected'")
    path = write_results("reconnect", {"runtime": args.runtime, "runs": args.runs, "downtime": args.downtime,
                                       "stats": stats, "samples": samples})
    print(f"\nwrote {path.relative_to(path.parent.parent.parent)}")
    return 1 if args.smoke and any(s["errors"] for s in stats.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
