"""Simulated visitors: plain WebSocket clients that follow the protocol as the widget does.

Each visitor keeps its session and the last sequence number it saw, resends what was never
acknowledged after a reconnect, and reconnects after a close with the widget's own backoff
(``widget/core/backoff.py``, full jitter). It records what a visitor would notice: every question
acknowledged, each answered by exactly one reply, and when it reconnected after each close.
"""

import asyncio
import json
import random
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from widget.core.backoff import next_delay
from widget.core.settings import Settings

SETTINGS = Settings()


class Visitor:
    def __init__(self, url, origin, name, questions=3, gap=(0.5, 1.5)):
        self.url = url
        self.origin = origin
        self.name = name
        self.questions = [f"{name}-q{n}" for n in range(questions)]
        self.gap = gap
        self.session = None
        self.last_seq = 0
        self.acked = {}          # question id -> seq
        self.replies = {}        # question id -> set of reply ids seen
        self.texts = {}          # question id -> the reply's text
        self.sent = []           # questions sent at least once
        self.closes = []         # (time of the close, close code)
        self.reconnects = []     # seconds from a close to the next welcome
        self.attempt = 0
        self._random = random.Random(name).random

    @property
    def done(self):
        return len(self.sent) == len(self.questions) and all(q in self.acked and self.replies.get(q)
                                                              for q in self.questions)

    async def run(self, deadline):
        """Talk until every question is acknowledged and answered, or ``deadline`` (loop time)."""
        loop = asyncio.get_running_loop()
        closed_at = None
        while not self.done and loop.time() < deadline:
            try:
                async with connect(self.url, origin=self.origin, open_timeout=5, ping_interval=None,
                                   compression=None) as ws:
                    await ws.send(json.dumps({"type": "hello", "session": self.session, "last_seq": self.last_seq}))
                    await self._converse(ws, closed_at, deadline)
                    return
            except (ConnectionClosed, InvalidHandshake, InvalidStatus, OSError, TimeoutError) as error:
                code = getattr(getattr(error, "rcvd", None), "code", None)
                if isinstance(error, InvalidStatus):
                    code = f"HTTP {error.response.status_code}"
                closed_at = time.monotonic()
                self.closes.append((closed_at, code if code is not None else type(error).__name__))
                self.attempt += 1
                await asyncio.sleep(next_delay(self.attempt, SETTINGS.backoff_base, SETTINGS.backoff_cap,
                                               self._random, slow=code == 1013))

    async def _converse(self, ws, closed_at, deadline):
        loop = asyncio.get_running_loop()
        welcomed = False
        next_question = loop.time()
        while not self.done:
            if welcomed and len(self.sent) < len(self.questions) and loop.time() >= next_question:
                question = self.questions[len(self.sent)]
                self.sent.append(question)
                await self._ask(ws, question)
                next_question = loop.time() + self.gap[0] + self._random() * (self.gap[1] - self.gap[0])
            wait = max(0.01, min(next_question - loop.time(), deadline - loop.time()))
            try:
                frame = json.loads(await asyncio.wait_for(ws.recv(), wait))
            except TimeoutError:
                if loop.time() >= deadline:
                    return
                continue
            kind = frame.get("type")
            if isinstance(frame.get("seq"), int):
                self.last_seq = max(self.last_seq, frame["seq"])
            if kind == "welcome":
                welcomed = True
                self.attempt = 0
                if closed_at is not None:
                    self.reconnects.append(time.monotonic() - closed_at)
                self.session = frame["session"]
                for question in self.sent:  # the outbox: whatever was not acknowledged goes again
                    if question not in self.acked:
                        await self._ask(ws, question)
            elif kind == "ack":
                self.acked[frame["id"]] = frame["seq"]
            elif kind == "message":  # replay of a stored question: acknowledged by being stored
                self.acked.setdefault(frame["id"], frame["seq"])
            elif kind == "reply":
                self.replies.setdefault(frame["in_reply_to"], set()).add(frame["id"])
                self.texts[frame["in_reply_to"]] = frame["text"]

    async def _ask(self, ws, question):
        await ws.send(json.dumps({"type": "message", "id": question, "text": "How long does shipping take?"}))

    async def stored_answers(self):
        """From the store, as a fresh tab sees it (replay from 0): question id -> how many replies."""
        async with connect(self.url, origin=self.origin, open_timeout=5, ping_interval=None) as ws:
            await ws.send(json.dumps({"type": "hello", "session": self.session, "last_seq": 0}))
            counts = {}
            async with asyncio.timeout(10):
                welcome = json.loads(await ws.recv())
                assert welcome["type"] == "welcome" and welcome["resumed"], welcome
                seq = 0
                while seq < welcome["last_seq"]:  # the replay ends with the entry the welcome names
                    frame = json.loads(await ws.recv())
                    seq = frame.get("seq", seq)
                    if frame.get("type") == "reply":
                        counts[frame["in_reply_to"]] = counts.get(frame["in_reply_to"], 0) + 1
            return counts


def spread(values):
    """min, median, p90, max of a list of seconds (for the report)."""
    ordered = sorted(values)
    if not ordered:
        return {}

    def at(fraction):
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    return {"n": len(ordered), "min": ordered[0], "p10": at(0.1), "median": at(0.5), "p90": at(0.9),
            "max": ordered[-1]}
