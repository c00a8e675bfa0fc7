"""Churn soak (bench/churn.py): sockets held while visitors come and go; memory comes back, descriptors do
not leak, the round trip stays under the bar.

The soak itself is marked (``make soak``; 10,000 held, 100 in and out per second, 10 minutes; sizes from
SOAK_CHURN_HELD, SOAK_CHURN_RATE, SOAK_CHURN_MINUTES, SOAK_CHURN_P99_MS to run it short). The default run
gets a smoke of a few seconds: the same script, small, with the verdicts it can judge in that time.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOAK_MINUTES = float(os.environ.get("SOAK_CHURN_MINUTES", "10"))


def churn(*args, timeout):
    """bench/churn.py with ``args``; its result (the JSON it wrote) and its log."""
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "churn.py"), *args], cwd=ROOT, capture_output=True,
                         text=True, timeout=timeout)
    written = [line.split(" ", 1)[1] for line in run.stdout.splitlines() if line.startswith("wrote ")]
    assert written, run.stdout[-2000:] + run.stderr[-3000:]
    return json.loads((ROOT / written[-1]).read_text()), run.stderr


def test_a_short_churn_leaks_no_descriptors_and_loses_no_socket():
    """200 held while 100 a second come and go for 3 s: as many descriptors open after as before, every
    visitor got in, and the held sockets still answer."""
    result, log = churn("--held", "200", "--rate", "100", "--minutes", "0.05", "--window", "1", "--settle", "1",
                        "--probes", "20", "--store", "memory", "--p99-ms", "1e9", "--no-pin",
                        "--name", "churn-smoke", timeout=60)  # bench/results/churn-latest.json stays the soak's
    assert result["verdicts"]["no_fd_leak"]["passed"], result["verdicts"]["no_fd_leak"]["why"] + "\n" + log[-2000:]
    last = result["samples"][-1]
    assert last["failed"] == 0 and last["opened"] >= 250 and last["closed"] >= 250, log[-2000:]
    assert last["held"] == 200, log[-2000:]
    assert sum(s["rtt_ms"]["n"] for s in result["samples"]) >= 20 * 3 / 2, log[-2000:]  # 20 probes, 1/s, 3 s


@pytest.mark.soak
@pytest.mark.timeout(SOAK_MINUTES * 60 + 900)  # opening 10,000 sockets and stopping take minutes of their own
def test_churn_soak():
    """N held while visitors come and go at R a second for M minutes: memory returns within 5 % of its
    plateau, no descriptor leaks, every window's round-trip p99 under the bar."""
    held = os.environ.get("SOAK_CHURN_HELD", "10000")
    result, log = churn("--held", held, "--rate", os.environ.get("SOAK_CHURN_RATE", "100"),
                        "--minutes", str(SOAK_MINUTES), "--p99-ms", os.environ.get("SOAK_CHURN_P99_MS", "50"),
                        timeout=SOAK_MINUTES * 60 + 800)
    failed = {name: verdict["why"] for name, verdict in result["verdicts"].items() if not verdict["passed"]}
    assert not failed, f"{failed}\n{log[-4000:]}"
