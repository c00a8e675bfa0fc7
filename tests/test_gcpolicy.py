"""The server's garbage-collection policy (server/gcpolicy.py): frozen survivors, sweeps, and sockets that
leave nothing behind for the collector."""

import asyncio
import contextlib
import gc
import json
import weakref

import pytest
from websockets.exceptions import ConnectionClosed

from server import gcpolicy
from server.transport.socket import ChatConnection

ALLOWED = {"Origin": "https://shop.example.com"}


class Node:
    """An object that can sit in a reference cycle and be watched with a weakref."""


def cycle():
    node = Node()
    node.me = node
    return node


@pytest.fixture
def policy():
    """A FreezePolicy installed in this process, its scheduled sweeps collected instead of run."""
    scheduled = []
    now = [0.0]
    installed = gcpolicy.FreezePolicy(scheduled.append, clock=lambda: now[0])
    installed.scheduled, installed.now = scheduled, now
    installed.install()
    try:
        yield installed
    finally:
        installed.uninstall()


def test_sweep_is_due_when_the_heap_grew_by_a_quarter_and_ten_minutes_passed():
    """The sweep's trigger is CPython's own quarter rule, applied to the heap's blocks, at most every ten
    minutes."""
    assert not gcpolicy.sweep_due(1250, 1000, 600)
    assert gcpolicy.sweep_due(1251, 1000, 600)
    assert not gcpolicy.sweep_due(5000, 1000, 599)
    assert gcpolicy.sweep_due(111, 100, 1, growth=0.1, interval=1)


def test_sockets_opened_since_the_last_sweep_explain_the_heaps_growth():
    """A server filling up grows its heap with live sockets: up to PER_CONNECTION blocks for each socket
    opened since the last sweep are not taken for frozen garbage; growth beyond them is."""
    grown = 1000 + 10 * gcpolicy.PER_CONNECTION
    assert not gcpolicy.sweep_due(grown * 1.25, 1000, 600, new_connections=10)
    assert gcpolicy.sweep_due(grown * 1.25 + 1, 1000, 600, new_connections=10)
    assert gcpolicy.sweep_due(1251, 1000, 600, new_connections=-10)  # sockets closed: nothing explained


async def test_the_policy_runs_its_own_full_collections_from_the_event_loop():
    """Every ``every`` seconds a full collection (whose survivors are frozen), so none has to walk more
    than that long's new objects."""
    full = []

    def count(phase, info):
        if phase == "stop" and info["generation"] == 2:
            full.append(gc.get_freeze_count())

    gc.callbacks.append(count)
    policy = gcpolicy.install(asyncio.get_running_loop(), "freeze", every=0.02)
    try:
        kept = [cycle() for _ in range(500)]
        async with asyncio.timeout(5):
            while len(full) < 3:
                await asyncio.sleep(0.01)
        in_view = {id(each) for each in gc.get_objects()}  # frozen objects are out of the collector's view
        assert not any(id(node) in in_view for node in kept)
        policy.uninstall()
        after = len(full)
        await asyncio.sleep(0.1)
        assert len(full) == after  # uninstalled: no more
    finally:
        policy.uninstall()
        gc.callbacks.remove(count)


def test_young_collections_wait_for_more_allocations_and_uninstall_restores_them():
    """Young collections every YOUNG_THRESHOLD allocations while the policy is on; CPython's after."""
    before = gc.get_threshold()
    policy = gcpolicy.FreezePolicy(lambda callback: None)
    policy.install()
    try:
        assert gc.get_threshold() == (gcpolicy.YOUNG_THRESHOLD, *before[1:])
    finally:
        policy.uninstall()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_survivors_of_a_full_collection_are_frozen(policy):
    """After a full collection, what survived is out of the next one's walk."""
    kept = [cycle() for _ in range(1000)]
    before = gc.get_freeze_count()
    gc.collect()
    assert gc.get_freeze_count() >= before + 1000
    assert not gc.is_tracked(kept) or gc.get_freeze_count() > before  # the list itself too
    del kept


def test_a_frozen_cycle_is_freed_by_the_sweep(policy):
    """A cycle frozen while alive is garbage nobody collects, until the sweep."""
    node = cycle()
    watch = weakref.ref(node)
    gc.collect()  # node survives: frozen
    del node
    gc.collect()
    assert watch() is not None  # the leak the sweep exists for
    policy.sweep()
    assert watch() is None
    assert policy.sweeps == 1


def test_a_sweep_is_scheduled_once_when_the_heap_grows(policy):
    """Growth past the quarter schedules one sweep on the loop, not one per collection, and not before
    the interval."""
    kept = [[] for _ in range(policy.after_last_sweep // 2 + 1000)]
    gc.collect()
    assert policy.scheduled == []
    policy.now[0] += gcpolicy.SWEEP_INTERVAL
    gc.collect()
    gc.collect()
    assert policy.scheduled == [policy.sweep]
    policy.sweep()
    assert policy.after_last_sweep >= len(kept)
    gc.collect()
    assert policy.scheduled == [policy.sweep]  # no growth since the sweep


def test_the_frozen_set_is_never_counted_after_a_collection(policy, monkeypatch):
    """Counting the frozen set walks all of it (a few hundred ms at 10,000 sockets): the policy's collections,
    one a second, and the sweep's check after each never do."""
    counted = []
    monkeypatch.setattr(gcpolicy.gc, "get_freeze_count", lambda: counted.append(1) or 0)
    policy.now[0] += gcpolicy.SWEEP_INTERVAL
    for _ in range(3):
        gc.collect()
    assert counted == []


def test_python_mode_leaves_the_collector_alone():
    """CHAT_WIDGET_GC=python: no freeze, no callback (the comparison baseline)."""
    callbacks = list(gc.callbacks)
    assert gcpolicy.install(asyncio.new_event_loop(), "python") is None
    assert gc.callbacks == callbacks and gc.get_freeze_count() == 0


async def test_a_closed_socket_is_freed_without_the_collector(make_app):
    """A socket that ends (here: the client goes away) leaves no cycle: reference counting frees its
    connection at once. Under the freeze policy a cycle would never be freed until a sweep."""
    app = make_app(allow_origins=["https://shop.example.com"])
    seen = []

    class Watched(ChatConnection):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(weakref.ref(self))

    app.extensions["chat_connection_class"] = Watched
    gc.collect()
    gc.disable()
    try:
        async with app.test_app():
            async with app.test_client().websocket("/ws", headers=ALLOWED) as socket:
                await socket.send(json.dumps({"type": "hello"}))
                assert json.loads(await socket.receive())["type"] == "welcome"
                await socket.send(json.dumps({"type": "message", "id": "m1", "text": "When are you open?"}))
                while json.loads(await socket.receive())["type"] != "reply":
                    pass
            for _ in range(50):
                await asyncio.sleep(0.01)
                if seen and seen[0]() is None:
                    break
        assert seen and seen[0]() is None, "the closed socket's connection is kept alive by a reference cycle"
    finally:
        gc.enable()


# In the server under test: its collector off, and on SIGUSR1 a count of the connection objects still alive
# (before any collection: with the collector off, one that is alive after its socket closed is held by a
# cycle or a leak), then one collection that counts those it found in cycles. Both counts are needed: a
# cycle through a suspended generator (websockets' parser) is broken by the generator's finalizer inside
# the collection, so its objects are freed there and never reach gc.garbage, even with DEBUG_SAVEALL.
# Short-lived cycles, such as Werkzeug's router makes for every request, are not connection objects.
COUNT_GARBAGE = """import gc, signal, sys
gc.disable()
KINDS = {"ChatWebSocketProtocol", "_SelectorSocketTransport", "ChatConnection", "Task", "AsgiSocket",
         "Disconnected", "Timeout", "traceback"}
PER_SOCKET = {"ChatWebSocketProtocol", "ServerProtocol", "ChatConnection", "AsgiSocket"}  # none once all closed
def _count(signum, frame):
    alive = sum(1 for o in gc.get_objects() if type(o).__name__ in PER_SOCKET)
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.collect()
    found = sum(1 for o in gc.garbage if type(o).__name__ in KINDS)
    gc.garbage.clear()
    gc.set_debug(0)
    gc.collect()
    print("garbage %d alive %d" % (found, alive), file=sys.stderr, flush=True)
signal.signal(signal.SIGUSR1, _count)
"""


async def test_closed_sockets_leave_no_cycles_in_the_real_server(tmp_path):
    """Through Uvicorn's protocol, websockets' parser and asyncio's transport too: sockets that close (with
    a close frame, cut, or failed by the server's parser) leave no connection object that only the
    collector could free."""
    import signal
    import time

    import live

    (tmp_path / "sitecustomize.py").write_text(COUNT_GARBAGE)
    server = live.start(env={"PYTHONPATH": str(tmp_path), "CHAT_WIDGET_GC": "python"})

    async def garbage():
        """(connection objects found in cycles, connection objects alive before collecting)"""
        seen = len(server.output)
        server.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            counts = [line.split() for line in server.output[seen:] if line.startswith("garbage ")]
            if counts:
                return int(counts[0][1]), int(counts[0][3])
            await asyncio.sleep(0.05)
        raise AssertionError("the server did not count its garbage")

    try:
        await garbage()  # start-up's own
        sockets = 40
        for index in range(sockets):
            async with live.opened(server) as ws:
                await ws.send(json.dumps({"type": "hello"}))
                assert (await live.receive(ws))["type"] == "welcome"
                await ws.send(json.dumps({"type": "ping", "t": 1}))
                await live.receive(ws)
                if index % 3 == 1:
                    ws.transport.abort()  # cut without a close frame
                elif index % 3 == 2:
                    ws.transport.write(b"\x81\x01a")  # an unmasked frame: the server's parser fails (1002)
                    with contextlib.suppress(ConnectionClosed):
                        await live.receive(ws)
        await asyncio.sleep(0.5)
        in_cycles, alive = await garbage()
        assert in_cycles == 0, f"{in_cycles} connection objects in cycles after {sockets} sockets closed"
        assert alive == 0, f"{alive} connection objects still alive after {sockets} sockets closed"
    finally:
        server.stop()
