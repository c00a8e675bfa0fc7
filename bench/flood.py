"""A real visitor's wait for answers while others flood the server (docs/security.md, "Budgets").

One ``chat-widget serve`` process with its default budgets and an SQLite store in a temporary folder.
A visitor on an address of its own (a new one, 127.0.2.x, per scenario and run, so that it stays within
its budgets) asks a question every second and times, per question, the acknowledgement (stored) and
the consultant's whole reply. Scenarios, each ``--seconds`` long, in one
server, interleaved ``--runs`` times:

* ``alone``: nobody else (the baseline of the ratios);
* ``one address``: 20 sockets from 127.0.0.3 sending 16 KB messages at 2 a second each, never waiting
  as told (issue 17's shape), reconnecting when closed;
* ``many addresses``: 40 addresses (127.0.1.x), 2 sockets each, the same.

The table gives, per scenario, the median, p90 and max over all the visitor's questions, the ratio
of the median to the baseline's, and what the flood got: messages acknowledged (stored) against
sent, and closes by code.

    .venv/bin/python bench/flood.py                 # 3 runs of 10 s per scenario: about 2 minutes
    .venv/bin/python bench/flood.py --smoke         # 1 run of 3 s (CI smoke)

Prints a table; writes bench/results/flood-<time>.json (and flood-latest.json).
"""

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from common import ROOT, summary, table, write_results

sys.path.insert(0, str(ROOT))
from server.config import DEFAULTS  # noqa: E402

sys.path.insert(0, str(ROOT / "e2e"))
from server_process import ServerProcess  # noqa: E402

ORIGIN = "http://flood.test"
BIG = 16 * 1024 - 200   # the largest text whose frame fits the 16 KiB frame limit
QUESTION = "What are your opening hours?"
# The defaults, stated: the test harness opens the per-address budgets wide, a benchmark of them must not.
BUDGETS = {f"CHAT_WIDGET_{name.upper()}": str(DEFAULTS[name]) for name in (
    "address_messages_per_minute", "address_bytes_per_minute", "address_conversations_per_hour",
    "address_replies_per_minute", "address_waiting_replies")}
SCENARIOS = {"alone": [], "one address": ["127.0.0.3"] * 20,
             "many addresses": [f"127.0.1.{n // 2 + 1}" for n in range(80)]}


def socket_to(url, address):
    return connect(url, origin=ORIGIN, local_addr=(address, 0), open_timeout=5, compression=None,
                   max_size=None, ping_interval=None)


async def flooder(url, address, until, tally):
    n = 0
    while time.monotonic() < until:
        try:
            async with socket_to(url, address) as ws:
                await ws.send(json.dumps({"type": "hello"}))
                while time.monotonic() < until:
                    n += 1
                    tally["sent"] += 1
                    await ws.send(json.dumps({"type": "message", "id": f"f{id(tally)}-{address}-{n}-{time.monotonic_ns()}",
                                              "text": "x" * BIG}))
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(0.5):
                            while True:
                                if json.loads(await ws.recv())["type"] == "ack":
                                    tally["acked"] += 1
        except ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
            tally["closes"][code] = tally["closes"].get(code, 0) + 1
            await asyncio.sleep(0.1)
        except OSError:  # refused (429: the address's sockets are all open) or reset
            tally["refused"] += 1
            await asyncio.sleep(0.2)


async def visitor(url, address, until, acks, replies):
    async with socket_to(url, address) as ws:
        await ws.send(json.dumps({"type": "hello"}))
        while json.loads(await ws.recv())["type"] != "welcome":
            pass
        n = 0
        while time.monotonic() < until:
            n += 1
            message_id = f"v{n}-{time.monotonic_ns()}"
            sent = time.monotonic()
            await ws.send(json.dumps({"type": "message", "id": message_id, "text": QUESTION}))
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "error":
                    raise RuntimeError(f"the visitor was refused: {frame}")
                if frame["type"] == "ack" and frame["id"] == message_id:
                    acks.append(time.monotonic() - sent)
                if frame["type"] == "reply" and frame.get("in_reply_to") == message_id:
                    replies.append(time.monotonic() - sent)
                    break
            await asyncio.sleep(1.0)


async def scenario(url, visitor_address, addresses, seconds):
    until = time.monotonic() + seconds
    tally = {"sent": 0, "acked": 0, "closes": {}, "refused": 0}
    acks, replies = [], []
    flood = [asyncio.create_task(flooder(url, address, until, tally)) for address in addresses]
    await visitor(url, visitor_address, until, acks, replies)
    await asyncio.gather(*flood)
    return acks, replies, tally


def ms(value):
    return f"{value * 1000:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--smoke", action="store_true", help="1 run of 3 s per scenario")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.seconds = 1, 3.0
    results = {name: {"acks": [], "replies": [], "tally": {"sent": 0, "acked": 0, "closes": {}, "refused": 0}}
               for name in SCENARIOS}
    with tempfile.TemporaryDirectory() as folder:
        server = ServerProcess("--allow-origin", ORIGIN, "--log-level", "warning",
                               env={"CHAT_WIDGET_STORE": str(Path(folder) / "chat.sqlite3"), **BUDGETS}).start()
        try:
            url = server.url.replace("http://", "ws://") + "/ws?v=1"
            visitors = (f"127.0.2.{n}" for n in range(1, 255))
            for _ in range(args.runs):
                for name, addresses in SCENARIOS.items():
                    acks, replies, tally = asyncio.run(scenario(url, next(visitors), addresses, args.seconds))
                    found = results[name]
                    found["acks"] += acks
                    found["replies"] += replies
                    for key in ("sent", "acked", "refused"):
                        found["tally"][key] += tally[key]
                    for code, count in tally["closes"].items():
                        found["tally"]["closes"][code] = found["tally"]["closes"].get(code, 0) + count
        finally:
            server.stop()
    base = statistics.median(results["alone"]["replies"])
    rows = []
    for name, found in results.items():
        reply, ack = summary(found["replies"]), summary(found["acks"])
        p90 = statistics.quantiles(found["replies"], n=10)[-1] if len(found["replies"]) >= 10 else reply["max"]
        tally = found["tally"]
        flood = "" if name == "alone" else f"{tally['acked']} of {tally['sent']}"
        closes = ", ".join(f"{code}: {count}" for code, count in sorted(tally["closes"].items(), key=str))
        rows.append([name, reply["n"], ms(ack["median"]), ms(reply["median"]), ms(p90), ms(reply["max"]),
                     f"{reply['median'] / base:.2f}", flood, closes])
    print(f"\nA visitor's wait (ms) while others flood: {args.runs} run(s) of {args.seconds:g} s per scenario\n")
    print(table(["scenario", "questions", "ack median", "reply median", "reply p90", "reply max", "× alone",
                 "flood stored", "flood closes"], rows))
    path = write_results("flood", {"runs": args.runs, "seconds": args.seconds, "results": results})
    print(f"\nresults: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
