"""A rolling restart behind the shipped nginx: 200 simulated visitors chat while each instance is
restarted in turn. Every message is acknowledged and answered exactly once, and the visitors dropped by
a restart come back spread over the backoff window by its jitter, not all at once."""

import asyncio
import os
import time

import pytest

import live
from server.conversations.service import CUT_OFF, SORRY, TOO_FAST
from nginx import Nginx, require_nginx
from visitors import SETTINGS, Visitor, spread

VISITORS = int(os.environ.get("ROLLING_VISITORS", 200))
QUESTIONS = 5
pytestmark = pytest.mark.timeout(180)


def test_rolling_restart_loses_nothing_and_answers_each_question_once(redis_url, capsys):
    require_nginx()
    env = {"CHAT_WIDGET_MAX_CONNECTIONS_PER_ADDRESS": "10000", "CHAT_WIDGET_REPLY_LEASE": "3"}
    instances = [live.start("--store", redis_url, "--trusted-proxy", "127.0.0.1", env=env) for _ in range(2)]
    try:
        with Nginx.deployed([server.port for server in instances]) as proxy:
            visitors, restarts = asyncio.run(_chat_through_restarts(proxy, instances, env))
    finally:
        for server in instances:
            server.stop()

    unfinished = [v.name for v in visitors if not v.done]
    assert not unfinished, f"{len(unfinished)} visitors did not get every question acknowledged and answered"
    twice = {v.name: {q: ids for q, ids in v.replies.items() if len(ids) > 1} for v in visitors}
    assert not any(twice.values()), f"questions answered by more than one reply: {twice}"
    stand_ins = (SORRY, CUT_OFF.strip(), *TOO_FAST.values())
    not_answered = [(v.name, q, t) for v in visitors for q, t in v.texts.items() if any(s in t for s in stand_ins)]
    assert not not_answered, f"answered by a stand-in, not the consultant: {not_answered[:5]}"
    dropped = [v for v in visitors if v.closes]
    assert len(dropped) >= VISITORS // 4, "the restarts should have dropped many visitors' sockets"
    first_delays = [v.reconnects[0] for v in dropped if v.reconnects]
    report = spread(first_delays)
    if os.environ.get("ROLLING_DEBUG"):
        print({v.name: [c for _, c in v.closes] for v in dropped if len(v.closes) > 1})
    with capsys.disabled():
        print(f"\nrolling restart: {VISITORS} visitors, {len(dropped)} dropped; restarts took "
              + ", ".join(f"{seconds:.1f} s" for seconds in restarts)
              + "; reconnect after a close (s): "
              + ", ".join(f"{key} {value:.2f}" if key != "n" else f"n {value}" for key, value in report.items()))
    # Full jitter over [0.1, backoff_base) for the first retry: a bunched herd would have p90 - p10 near 0.
    assert report["p90"] - report["p10"] > SETTINGS.backoff_base / 3, report


async def _chat_through_restarts(proxy, instances, env):
    url = proxy.url.replace("http://", "ws://", 1) + "/ws?v=1"
    visitors = [Visitor(url, live.ALLOWED, f"v{n}", questions=QUESTIONS, gap=(1.5, 3.0)) for n in range(VISITORS)]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    running = [asyncio.create_task(visitor.run(deadline)) for visitor in visitors]
    await _until(lambda: sum(1 for v in visitors if v.session) == VISITORS, 30)
    restarts = []
    for index, server in enumerate(instances):
        # As an operator's script does: the previous instance is ready, and nginx's fail_timeout (2 s)
        # has passed, so nginx sends sockets to it again before the next one goes down.
        await asyncio.sleep(2.5)
        began = time.monotonic()
        await asyncio.to_thread(server.terminate)
        fresh = live.ServerProcess(*server.args, env=server.env, port=server.port)
        instances[index] = await asyncio.to_thread(fresh.start)
        restarts.append(time.monotonic() - began)
    await asyncio.gather(*running)
    stored = await asyncio.gather(*(visitor.stored_answers() for visitor in visitors))  # read back via the proxy
    for visitor, counts in zip(visitors, stored):
        assert all(counts.get(q) == 1 for q in visitor.questions), (visitor.name, counts)
    return visitors, restarts


async def _until(condition, timeout):
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)

