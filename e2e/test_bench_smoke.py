"""The benchmark commands still run (tiny sizes, no timing assertions): `make bench-smoke` in the test run."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("script", ["connect.py", "bytes.py", "reconnect.py", "capacity.py", "fallback.py", "hostload.py"])
def test_benchmark_runs_in_smoke_mode(script):
    """Each benchmark finishes its smoke run and prints a table."""
    result = subprocess.run([sys.executable, str(ROOT / "bench" / script), "--smoke"], cwd=ROOT,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "|" in result.stdout or "---" in result.stdout, result.stdout[-2000:]
