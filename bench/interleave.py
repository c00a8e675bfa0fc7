"""bench/connect.py for several variants (code trees, options) with their runs interleaved, and one table.

Each round runs ``connect.py --runs 1`` once per variant (in alternating order), so that a busy minute of
the machine falls on every variant alike; the ratio to the plain-JS page of the same run says how busy
it was. A variant is ``LABEL=TREE [connect.py options]``: TREE is a checkout of this project (its own
bench/connect.py and server run), options are passed through.

    .venv/bin/python bench/interleave.py --rounds 7 --profiles 10mbit-40ms,slow4g \
        --variant "before=/tmp/base15" \
        --variant "now=." \
        --variant "no-early-socket=. --init-script bench/no-early-socket.js"

Writes bench/results/interleave-<time>.json (and interleave-latest.json) with every sample.
"""

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

from common import ROOT, summary, table, write_results


def parse_variant(text):
    label, _, rest = text.partition("=")
    words = shlex.split(rest)
    if not label or not words:
        raise argparse.ArgumentTypeError(f"expected LABEL=TREE [options], got {text!r}")
    return label, (ROOT / words[0]).resolve(), words[1:]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", action="append", type=parse_variant, required=True, metavar="LABEL=TREE [OPTIONS]")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profiles", default="10mbit-40ms,slow4g")
    parser.add_argument("--runtimes", default="micropython")
    args = parser.parse_args(argv)
    samples = {}  # (label, profile/variant) -> [ms or None]
    sizes = {}
    for round_number in range(args.rounds):
        order = args.variant if round_number % 2 == 0 else args.variant[::-1]
        for label, tree, options in order:
            command = [sys.executable, "bench/connect.py", "--runs", "1", "--no-warm", "--profiles", args.profiles,
                       "--runtimes", args.runtimes, "--label", label, *options]
            done = subprocess.run(command, cwd=tree, capture_output=True, text=True)
            latest = Path(tree) / "bench" / "results" / "connect-latest.json"
            try:
                data = json.loads(latest.read_text())
            except (OSError, ValueError):
                print(f"round {round_number + 1} {label}: failed\n{done.stderr[-800:]}", file=sys.stderr)
                continue
            if data.get("label") != label or done.returncode:
                print(f"round {round_number + 1} {label}: no results\n{done.stderr[-800:]}", file=sys.stderr)
                continue
            for cell, runs in data["samples"].items():
                samples.setdefault((label, cell), []).extend(run.get("cold") for run in runs)
                sizes.setdefault((label, cell), []).extend(run.get("cold_bytes") for run in runs)
            print(f"round {round_number + 1} {label}: " + "  ".join(
                f"{cell} {runs[0].get('cold') or 0:.0f}" for cell, runs in data["samples"].items()), file=sys.stderr, flush=True)
    rows, stats = [], {}
    for (label, cell), values in sorted(samples.items(), key=lambda item: (item[0][1], item[0][0])):
        s = summary(values)
        profile = cell.split("/")[0]
        base = summary(samples.get((label, f"{profile}/baseline"), []))
        kb = summary(sizes.get((label, cell), []))
        stats[f"{label}/{cell}"] = {"ms": s, "bytes": kb}
        if s is None:
            continue
        ratio = f"{s['median'] / base['median']:.1f}x" if base and not cell.endswith("/baseline") else ""
        rows.append([cell, label, f"{s['median']:,.0f}", f"{s['q1']:,.0f}-{s['q3']:,.0f}", f"{s['min']:,.0f}-{s['max']:,.0f}",
                     ratio, f"{kb['median'] / 1000:,.1f}" if kb else "", s["n"]])
    print(table(["profile/variant", "label", "median ms", "IQR", "min-max", "vs JS", "KB wire", "n"], rows))
    path = write_results("interleave", {"variants": [[label, str(tree), options] for label, tree, options in args.variant],
                                        "rounds": args.rounds, "stats": stats,
                                        "samples": {f"{label}/{cell}": values for (label, cell), values in samples.items()}})
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
