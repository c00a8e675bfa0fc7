"""Server CPU per chat message, end to end: one ``chat-widget serve`` on SQLite (bench/cluster.py's
``sqlite-direct``), visitors that say ``hello`` and then ask the default knowledge consultant questions
at a steady rate; each message is stored, acknowledged, answered in streamed chunks and the answer stored.

    .venv/bin/python bench/message_cost.py                       # 100 visitors, 100 msg/s, 10 s, 3 repeats
    .venv/bin/python bench/message_cost.py --root /tmp/other     # another checkout's server, same load
    .venv/bin/python bench/message_cost.py --profile /tmp/m.prof # cProfile the server (pstats file)

CPU per message = the server's CPU during the chat phase (until every reply is in), less what it spends
idle with the same sockets open (measured just before, same length, after ``--settle`` s), over the
messages answered. Both are printed: the idle share includes the server's heartbeat, if it beats.
"""

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="the checkout whose server (and bench/cluster.py) runs")
parser.add_argument("--visitors", type=int, default=100)
parser.add_argument("--rate", type=float, default=100.0, help="messages per second, all visitors together")
parser.add_argument("--duration", type=float, default=10.0)
parser.add_argument("--repeats", type=int, default=3)
parser.add_argument("--settle", type=float, default=5.0,
                    help="seconds to wait after the sockets open before measuring (work the server does once at start)")
parser.add_argument("--profile", help="cProfile the server into this pstats file (chat phase included)")
args = parser.parse_args()
sys.path.insert(0, str(args.root / "bench"))

import cluster  # noqa: E402  (bench/cluster.py of --root: Cluster, open_many, chat, CpuMeter)
from capacity import med, spread  # noqa: E402
from common import raise_nofile  # noqa: E402

# Loaded by the server's interpreter (on its PYTHONPATH) when --profile is given: dump_stats stops the
# profiler, so it is enabled again after every dump.
PROFILE_HOOK = """import asyncio, cProfile, os, threading, time
_profiler = cProfile.Profile()
_profiler.enable()
def _dump():
    while True:
        time.sleep(2)
        _profiler.dump_stats(os.environ["MESSAGE_COST_PROFILE"])
        _profiler.enable()
threading.Thread(target=_dump, daemon=True).start()
"""


async def one_run(env):
    server = cluster.Cluster("sqlite-direct", None, env).start()
    try:
        visitors, errors, _ = await cluster.open_many(server.url, args.visitors)
        await asyncio.sleep(args.settle)
        meter = cluster.CpuMeter(server)
        meter.start()
        await asyncio.sleep(args.duration)
        idle, idle_wall = meter.stop()
        meter.start()
        phase = await cluster.chat(visitors, args.rate, args.duration)
        used, wall = meter.stop()
        cluster.close_visitors(visitors)
        answered = len(phase.replies)
        idle_share = idle["instances"] / idle_wall
        net = used["instances"] - idle_share * wall
        replies = sorted(ms for _, ms in phase.replies)
        return {"answered": answered, "sent": phase.sent, "missing": phase.missing, "errors": phase.errors,
                "open_errors": errors, "cpu_s": used["instances"], "wall_s": wall, "idle_share": idle_share,
                "ms_per_msg": net / answered * 1000 if answered else None,
                "gross_ms_per_msg": used["instances"] / answered * 1000 if answered else None,
                "reply_p50_ms": replies[len(replies) // 2] if replies else None}
    finally:
        server.stop()


async def main():
    raise_nofile()
    env = {}
    if args.profile:
        hook = tempfile.mkdtemp(prefix="message-cost-")
        Path(hook, "sitecustomize.py").write_text(PROFILE_HOOK)
        env = {"PYTHONPATH": hook, "MESSAGE_COST_PROFILE": str(Path(args.profile).resolve())}
    runs = []
    for repeat in range(args.repeats):
        result = await one_run(env)
        runs.append(result)
        print(f"[{repeat + 1}/{args.repeats}] {result['answered']} of {result['sent']} answered "
              f"({result['missing']} missing, errors {result['errors'] or 'none'}), server CPU "
              f"{result['cpu_s']:.2f} s in {result['wall_s']:.1f} s, idle {result['idle_share'] * 100:.1f} %: "
              f"{result['ms_per_msg']:.3f} ms per message ({result['gross_ms_per_msg']:.3f} gross), "
              f"reply p50 {result['reply_p50_ms']:.1f} ms", file=sys.stderr, flush=True)
    per = [run["ms_per_msg"] for run in runs if run["ms_per_msg"] is not None]
    print(f"{args.root}: {med(per):.3f} ms of server CPU per message (median of {len(per)}, range "
          f"{spread(per, '{:.3f}')}), {args.visitors} visitors, {args.rate:g} msg/s for {args.duration:g} s")


if __name__ == "__main__":
    asyncio.run(main())
