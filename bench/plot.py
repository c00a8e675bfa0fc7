"""Plots for docs/performance.md from bench/results/*.json, as plain SVG (no plotting library).

- ``docs/capacity-rtt.svg``: round-trip percentiles against sockets held, per server stack, from
  bench/capacity.py results: the chat phase's ack round trip (message -> ack through the durable store)
  where the run had one, else the ping phase's; the issue's bars (p99 50 ms, p99.9 200 ms) dashed.
- ``docs/churn-memory.svg``: the server's RSS over a churn soak (bench/churn.py), the plateau and its
  5 % band, with the ping p99 of every window below it.

    .venv/bin/python bench/plot.py                                   # the -latest results
    .venv/bin/python bench/plot.py --capacity bench/results/capacity-20261130-220000.json \\
                                   --churn bench/results/churn-20261130-223000.json

Why hand-written SVG rather than matplotlib: two line charts do not need a plotting stack (matplotlib,
numpy, pillow, fonttools: about 60 MB in the venv and a bench extra to keep installed); the SVG is a few
kilobytes of text that diffs in git and renders on GitHub.
"""

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
DASHES = {"p50": "", "p99": "6 3", "p999": "2 3"}
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 720, 360, 70, 170, 40, 50


class Axis:
    """Maps data to pixels, linear or logarithmic, and picks tick values."""

    def __init__(self, low, high, start, end, log=False):
        if log:
            low, high = math.log10(max(low, 1e-9)), math.log10(max(high, 1e-9))
        if high <= low:
            high = low + 1
        self.low, self.high, self.start, self.end, self.log = low, high, start, end, log

    def __call__(self, value):
        value = math.log10(max(value, 1e-9)) if self.log else value
        return self.start + (value - self.low) / (self.high - self.low) * (self.end - self.start)

    def ticks(self):
        if self.log:
            return [10 ** e * m for e in range(math.floor(self.low), math.ceil(self.high) + 1) for m in (1, 2, 5)
                    if self.low - 1e-9 <= math.log10(10 ** e * m) <= self.high + 1e-9]
        step = 10 ** math.floor(math.log10((self.high - self.low) / 4 or 1))
        for factor in (1, 2, 5, 10):
            if (self.high - self.low) / (step * factor) <= 6:
                step *= factor
                break
        first = math.ceil(self.low / step) * step
        return [first + i * step for i in range(int((self.high - first) / step) + 1)]


def label(value):
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:g}"


def chart(title, x_title, y_title, series, log_x=False, log_y=False, lines=(), band=None, height=HEIGHT, top=0):
    """One chart's SVG elements. ``series``: [(name, colour, dash, [(x, y)])]; ``lines``: horizontal
    dashed lines [(y, text)]; ``band``: (low, high) shaded."""
    points = [p for _, _, _, data in series for p in data]
    ys = [y for _, y in points] + [y for y, _ in lines] + (list(band) if band else [])
    xs = [x for x, _ in points]
    y_low = min(ys) * (0.8 if log_y else 1) if log_y else min(0, min(ys))
    x_axis = Axis(min(xs), max(xs), LEFT, WIDTH - RIGHT, log_x)
    y_axis = Axis(y_low, max(ys) * 1.1, top + height - BOTTOM, top + TOP, log_y)
    out = [f'<text x="{LEFT}" y="{top + 24}" font-size="15" font-weight="bold">{title}</text>']
    if band:
        out.append(f'<rect x="{LEFT}" y="{y_axis(band[1]):.1f}" width="{WIDTH - RIGHT - LEFT}" '
                   f'height="{y_axis(band[0]) - y_axis(band[1]):.1f}" fill="#2ca02c" fill-opacity="0.12"/>')
    for tick in x_axis.ticks():
        x = x_axis(tick)
        out.append(f'<line x1="{x:.1f}" y1="{top + TOP}" x2="{x:.1f}" y2="{top + height - BOTTOM}" stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + height - BOTTOM + 16}" text-anchor="middle">{label(tick)}</text>')
    for tick in y_axis.ticks():
        y = y_axis(tick)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label(tick)}</text>')
    out.append(f'<rect x="{LEFT}" y="{top + TOP}" width="{WIDTH - RIGHT - LEFT}" height="{height - TOP - BOTTOM}" '
               'fill="none" stroke="#888"/>')
    for value, text in lines:
        y = y_axis(value)
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#000" '
                   'stroke-dasharray="3 4"/>')
        out.append(f'<text x="{WIDTH - RIGHT - 4}" y="{y - 4:.1f}" text-anchor="end" fill="#000">{text}</text>')
    for index, (name, colour, dash, data) in enumerate(series):
        path = " ".join(f"{x_axis(x):.1f},{y_axis(y):.1f}" for x, y in data)
        dashing = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"{dashing}/>')
        if len(data) < 12:
            out += [f'<circle cx="{x_axis(x):.1f}" cy="{y_axis(y):.1f}" r="3" fill="{colour}"/>' for x, y in data]
        y = top + TOP + 8 + index * 18
        out.append(f'<line x1="{WIDTH - RIGHT + 12}" y1="{y}" x2="{WIDTH - RIGHT + 40}" y2="{y}" stroke="{colour}" '
                   f'stroke-width="2"{dashing}/>')
        out.append(f'<text x="{WIDTH - RIGHT + 46}" y="{y + 4}">{name}</text>')
    out.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{top + height - 12}" text-anchor="middle">{x_title}</text>')
    middle = top + (TOP + height - BOTTOM) / 2
    out.append(f'<text x="16" y="{middle}" text-anchor="middle" transform="rotate(-90 16 {middle})">{y_title}</text>')
    return out


def svg(elements, height):
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
            'font-family="sans-serif" font-size="11">\n<rect width="100%" height="100%" fill="#fff"/>\n'
            + "\n".join(elements) + "\n</svg>\n")


def rtt_series(capacity):
    """[(name, colour, dash, [(sockets held, ms)])] per stack and percentile: medians over repeats."""
    series = []
    for index, (stack, result) in enumerate(capacity["results"].items()):
        runs = result["sizes"]
        chat = any("chat" in r for r in runs)
        for quantile in ("p50", "p99", "p999"):
            points = []
            for size in sorted({r["n"] for r in runs}):
                values = [(r["chat"]["ack_ms"] if chat else r.get("rtt_ms", {})).get(quantile)
                          for r in runs if r["n"] == size and (not chat or "chat" in r)]
                values = [v for v in values if v is not None]
                if values:
                    points.append((size, max(statistics.median(values), 0.01)))
            if points:
                what = "ack" if chat else "ping"
                series.append((f"{stack} {what} {quantile.replace('p999', 'p99.9')}", COLOURS[index % len(COLOURS)],
                               DASHES[quantile], points))
    return series


def plot_capacity(capacity, out):
    series = rtt_series(capacity)
    if not series:
        return None
    chat = capacity.get("chat", {})
    title = ("Round trip against sockets held" + (f" ({chat.get('chatters')} chatting at {chat.get('rate_each')}/s each)"
                                                   if "chat" in capacity.get("phases", []) else ""))
    elements = chart(title, "sockets held", "ms (log)", series, log_x=True, log_y=True,
                     lines=[(50, "p99 bar 50 ms"), (200, "p99.9 bar 200 ms")])
    out.write_text(svg(elements, HEIGHT))
    return out


def plot_churn(churn, out):
    samples = churn["samples"]
    if not samples:
        return None
    verdict = churn.get("verdicts", {}).get("memory_returns", {}).get("why", "")
    churning = [s for s in samples if not s.get("settled")]
    fifth = max(1, len(churning) // 5)
    plateau = statistics.median(s["rss_kib"] for s in (churning[fifth:2 * fifth] or churning[:1])) / 1024
    rss = [(s["t"], s["rss_kib"] / 1024) for s in samples]
    title = f"Server memory over the churn soak: {churn['held']:,} held, {churn['rate']:g} in and out per second"
    elements = chart(title, "seconds", "RSS MiB", [("RSS", COLOURS[0], "", rss)], band=(plateau, plateau * 1.05),
                     lines=[(plateau, "plateau")])
    elements.append(f'<text x="{LEFT}" y="{HEIGHT - 2}" fill="#555">{verdict}</text>')
    p99 = [(s["t"], s["rtt_ms"]["p99"]) for s in churning if s["rtt_ms"]["p99"] is not None]
    if p99:
        elements += chart("Ping round trip p99 per window", "seconds", "ms", [("p99", COLOURS[1], "", p99)],
                          lines=[(50, "bar 50 ms")], top=HEIGHT, height=260)
    out.write_text(svg(elements, HEIGHT + (260 if p99 else 0)))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capacity", default=str(RESULTS / "capacity-latest.json"))
    parser.add_argument("--churn", default=str(RESULTS / "churn-latest.json"))
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args(argv)
    written = []
    for source, draw, name in ((args.capacity, plot_capacity, "capacity-rtt.svg"),
                               (args.churn, plot_churn, "churn-memory.svg")):
        if not Path(source).exists():
            print(f"plot: no {source}; skipped {name}", file=sys.stderr)
            continue
        path = draw(json.loads(Path(source).read_text()), Path(args.out) / name)
        if path:
            written.append(path)
    for path in written:
        print(f"wrote {path}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
