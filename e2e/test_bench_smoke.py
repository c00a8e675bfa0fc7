"""The benchmark commands still run (tiny sizes, no timing assertions): `make bench-smoke` in the test run."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 240  # seconds; a smoke run takes 3 to 40 s


@pytest.mark.timeout(LIMIT + 30)  # the run's own limit comes first, so what it printed is kept
@pytest.mark.parametrize("script", ["connect.py", "bytes.py", "reconnect.py", "capacity.py", "fallback.py", "hostload.py", "consultant.py", "flood.py"])
def test_benchmark_runs_in_smoke_mode(script):
    """Each benchmark finishes its smoke run and prints a table."""
    bench = subprocess.Popen([sys.executable, str(ROOT / "bench" / script), "--smoke"], cwd=ROOT, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    try:
        stdout, stderr = bench.communicate(timeout=LIMIT)
    except subprocess.TimeoutExpired:
        # A stuck run says where it is stuck: SIGUSR1 makes it print its asyncio tasks' stacks (bench/common.py),
        # SIGABRT makes faulthandler print every thread's. The servers it started (their own sessions) go
        # too, or they would outlive the test run.
        bench.send_signal(signal.SIGUSR1)
        try:
            bench.wait(timeout=2)  # a stuck run does not exit: this is the time its handler has to print
        except subprocess.TimeoutExpired:
            pass
        subprocess.run(["pkill", "-KILL", "-P", str(bench.pid)], check=False)
        bench.send_signal(signal.SIGABRT)
        try:
            stdout, stderr = bench.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            bench.kill()
            stdout, stderr = bench.communicate()
        pytest.fail(f"{script} --smoke did not finish in {LIMIT} s; its output so far:\n"
                    f"{stdout[-3000:]}\n{stderr[-6000:]}")
    assert bench.returncode == 0, stdout[-2000:] + stderr[-2000:]
    assert "|" in stdout or "---" in stdout, stdout[-2000:]
