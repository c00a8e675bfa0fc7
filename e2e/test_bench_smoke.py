"""The benchmark commands still run (tiny sizes, no timing assertions): `make bench-smoke` in the test run."""

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
    try:
        result = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--smoke"], cwd=ROOT,
                                capture_output=True, text=True, timeout=LIMIT)
    except subprocess.TimeoutExpired as stuck:
        def tail(data):
            text = data.decode(errors="replace") if isinstance(data, bytes) else (data or "")
            return text[-3000:]
        pytest.fail(f"{script} --smoke did not finish in {LIMIT} s; its output so far:\n"
                    f"{tail(stuck.stdout)}\n{tail(stuck.stderr)}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "|" in result.stdout or "---" in result.stdout, result.stdout[-2000:]
