"""What one chat message costs the shared store: Redis round trips, commands and bytes.

A chat message is what an instance does for one question and its streamed answer, in order:
``rate_wait``, ``add_visitor_message``, ``publish`` (the ack, for the session's other tabs), ``claim``,
``stream_started``, ``stream_chunk`` × 5 (a reply of ~200 characters), ``add_reply``, ``stream_ended``
and ``publish`` (the stored reply). A second instance watches every session, so each PUBLISH is
delivered to a subscriber as it would be in a deployment.

Measured on a real redis-server (a throwaway one on a loopback port unless ``--url`` names one; its
database is flushed): ``INFO commandstats`` before and after each operation (commands run inside a
script count too), ``INFO stats`` network bytes (requests in, replies and pub/sub deliveries out), the
client's round trips, and ``used_memory`` per stored message (question and answer) in conversations of
20 messages.

    .venv/bin/python bench/redis_cost.py [--url redis://127.0.0.1:6379/15] [--messages 200]

``measure(url=None, messages=200)`` returns the numbers; ``print_table(result)`` prints them.
"""

import argparse
import asyncio
import sys
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from protocol import frames  # noqa: E402
from server.conversations.redis_store import RedisStore  # noqa: E402

QUESTION = "Do you ship to Switzerland, and how long does it take? Thanks!"  # ~60 characters
REPLY = ("Yes, we ship to Switzerland. Orders leave our warehouse within one working day and usually "
         "arrive in three to five working days; customs fees are included in the price you see at "
         "checkout, so there is nothing more to pay.")  # ~220 characters
CHUNKS = 5


class RoundTrips:
    """Counts the requests a client sends: a command, or a whole pipeline."""

    def __init__(self, client):
        self.count = 0
        command = client.execute_command

        async def counted(*args, **options):
            self.count += 1
            return await command(*args, **options)
        client.execute_command = counted
        self._execute = Pipeline.execute
        trips = self

        async def execute(pipe, raise_on_error=True):
            trips.count += 1
            return await trips._execute(pipe, raise_on_error)
        Pipeline.execute = execute

    def restore(self):
        Pipeline.execute = self._execute


async def _snapshot(raw):
    commands = {name[len("cmdstat_"):]: stats["calls"] for name, stats in (await raw.info("commandstats")).items()}
    net = await raw.info("stats")
    return commands, net["total_net_input_bytes"], net["total_net_output_bytes"]


def _delta(before, after, overhead):
    commands = {name: calls - before[0].get(name, 0) for name, calls in after[0].items()
                if name != "info" and calls - before[0].get(name, 0)}
    # INFO's own replies vary by a few bytes: what is left of them is noise, never a negative cost
    return commands, max(0, after[1] - before[1] - overhead[0]), max(0, after[2] - before[2] - overhead[1])


async def measure(url=None, messages=200):
    if url is None:
        from redis_server import RedisServer

        with RedisServer() as server:
            return await measure(server.url(0), messages)
    raw = aioredis.Redis.from_url(url, decode_responses=True)
    await raw.flushdb()
    answering, watching = RedisStore(url), RedisStore(url)
    await answering.open()
    await watching.open()
    bus, watchers = answering.bus(), watching.bus()
    await watchers.start()
    trips = RoundTrips(answering._redis)
    try:
        # INFO itself is traffic: measured once with nothing between two snapshots, and subtracted
        first = await _snapshot(raw)
        second = await _snapshot(raw)
        overhead = (second[1] - first[1], second[2] - first[2])
        sessions = [await answering.create_session("https://shop.example") for _ in range(messages)]
        received = []

        async def send(frame):
            received.append(frame)
        for session_id in sessions:
            await watchers.watch(session_id, send)
        pieces = [REPLY[n * len(REPLY) // CHUNKS:(n + 1) * len(REPLY) // CHUNKS] for n in range(CHUNKS)]
        steps = [
            ("rate_wait", 1, lambda s, n: answering.rate_wait(s, 20, 10, 10)),
            ("add_visitor_message", 1, lambda s, n: answering.add_visitor_message(s, "m1", QUESTION)),
            ("publish (ack)", 1, lambda s, n: bus.publish(s, frames.ack("m1", 1))),
            ("claim", 1, lambda s, n: answering.claim(s, "m1", "r1", "en", 30)),
            ("stream_started", 1, lambda s, n: bus.stream_started(s, frames.reply_start("r1", "m1"))),
            ("stream_chunk", CHUNKS, lambda s, n: bus.stream_chunk(s, frames.reply_chunk("r1", pieces[n]))),
            ("add_reply", 1, lambda s, n: answering.add_reply(s, "r1", "m1", REPLY)),
            ("stream_ended", 1, lambda s, n: bus.stream_ended(s, "r1")),
            ("publish (reply)", 1, lambda s, n: bus.publish(s, frames.reply("r1", "m1", REPLY, 2))),
        ]
        rows = []
        for name, times, step in steps:
            before, trips.count = await _snapshot(raw), 0
            for session_id in sessions:
                for n in range(times):
                    await step(session_id, n)
            commands, bytes_in, bytes_out = _delta(before, await _snapshot(raw), overhead)
            rows.append({"operation": name + (f" × {times}" if times > 1 else ""), "round_trips": trips.count / messages,
                         "commands": {k: v / messages for k, v in sorted(commands.items())},
                         "bytes_in": bytes_in / messages, "bytes_out": bytes_out / messages})
        await asyncio.sleep(0.2)  # the last deliveries reach the watching instance
        memory = await _memory_per_message(raw, answering)
    finally:
        trips.restore()
        await watchers.stop()
        for store in (answering, watching):
            await store.close()
        await raw.flushdb()
        await raw.aclose()
    total = {"operation": "one chat message", "round_trips": sum(r["round_trips"] for r in rows),
             "commands": {}, "bytes_in": sum(r["bytes_in"] for r in rows), "bytes_out": sum(r["bytes_out"] for r in rows)}
    for row in rows:
        for name, calls in row["commands"].items():
            total["commands"][name] = total["commands"].get(name, 0) + calls
    return {"messages": messages, "question_chars": len(QUESTION), "reply_chars": len(REPLY), "chunks": CHUNKS,
            "rows": rows, "total": total, "frames_delivered": len(received) / messages, **memory}


async def _memory_per_message(raw, store, conversations=50, per_conversation=20):
    """used_memory growth per stored message (question and reply), and per conversation without any."""
    await raw.flushdb()
    base = (await raw.info("memory"))["used_memory"]
    sessions = [await store.create_session("https://shop.example") for _ in range(conversations)]
    empty = (await raw.info("memory"))["used_memory"]
    for session_id in sessions:
        for n in range(per_conversation):
            await store.add_visitor_message(session_id, f"m{n}", QUESTION)
            await store.add_reply(session_id, f"r{n}", f"m{n}", REPLY)
    full = (await raw.info("memory"))["used_memory"]
    text = len(QUESTION.encode()) + len(REPLY.encode())
    return {"memory_per_conversation": (empty - base) / conversations,
            "memory_per_message": (full - empty) / (conversations * per_conversation), "text_per_message": text}


def print_table(result):
    def commands(row):
        return " ".join(f"{name}:{calls:g}" for name, calls in row["commands"].items())
    print(f"Redis cost of one chat message ({result['question_chars']}-character question, "
          f"{result['reply_chars']}-character reply in {result['chunks']} chunks), mean of {result['messages']}:")
    header = f"{'operation':<24} {'trips':>5} {'cmds':>5} {'bytes in':>9} {'bytes out':>9}  commands (inside scripts too)"
    print(header)
    print("-" * len(header))
    for row in result["rows"] + [result["total"]]:
        if row is result["total"]:
            print("-" * len(header))
        print(f"{row['operation']:<24} {row['round_trips']:>5g} {sum(row['commands'].values()):>5g} "
              f"{row['bytes_in']:>9.0f} {row['bytes_out']:>9.0f}  {commands(row)}")
    print(f"frames delivered to the watching instance per message: {result['frames_delivered']:g}")
    print(f"memory: {result['memory_per_message']:.0f} bytes per stored message (question and reply: "
          f"{result['text_per_message']} bytes of text), {result['memory_per_conversation']:.0f} bytes per "
          f"conversation before its first message")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a Redis database to use (flushed!); default: a throwaway redis-server")
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    print_table(asyncio.run(measure(args.url, args.messages)))


if __name__ == "__main__":
    main()
