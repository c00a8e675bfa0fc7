"""A stuck benchmark can say what it waits for: SIGUSR1 prints every asyncio task's stack (bench/common.py).

e2e/test_bench_smoke.py sends it before SIGABRT when a smoke run overstays: bench/fallback.py has hung in
its idle phase with its event loop idle, where faulthandler's thread stacks show only ``select``.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STUCK = """
import asyncio, os, signal, sys
sys.path.insert(0, "bench")
import common  # installs the handler

async def waiting_for_a_frame_that_never_comes():
    await asyncio.Event().wait()

async def main():
    stuck = asyncio.create_task(waiting_for_a_frame_that_never_comes())
    await asyncio.sleep(0)  # the task is now suspended in its await
    os.kill(os.getpid(), signal.SIGUSR1)
    stuck.cancel()

asyncio.run(main())
print("still running after the signal")
"""


def test_sigusr1_prints_the_stack_of_a_task_stuck_in_an_await():
    run = subprocess.run([sys.executable, "-c", STUCK], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "still running after the signal" in run.stdout  # the signal reports; it does not end the run
    assert "asyncio task(s)" in run.stderr, run.stderr[-2000:]
    assert ", in waiting_for_a_frame_that_never_comes" in run.stderr, run.stderr[-2000:]  # the task
    assert "asyncio/locks.py" in run.stderr  # and what it awaits, below its own frame: Event.wait
