"""The widget's core and the protocol package run unchanged under the real MicroPython (npm, in node).

The browser runs these modules under MicroPython, whose language is a subset of CPython's; every
module of ``widget/core/`` and ``protocol/`` is imported and exercised here, so a CPython-only
feature fails this test instead of a visitor's browser.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MPY = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript" / "micropython.mjs"
PACKAGES = ("protocol", "widget", "widget/core")

RUNNER = r"""
import { loadMicroPython } from %(mjs)s;
import fs from "fs";
const mp = await loadMicroPython({stdout: (l) => process.stdout.write(l + "\n")});
const files = JSON.parse(fs.readFileSync(%(files)s, "utf8"));
for (const [path, text] of files) {
  const parts = path.split("/");
  for (let i = 1; i < parts.length; i++) {
    const dir = "/" + parts.slice(0, i).join("/");
    try { mp.FS.mkdir(dir); } catch (e) {}
  }
  mp.FS.writeFile("/" + path, text);
}
try { mp.runPython(fs.readFileSync(%(script)s, "utf8")); }
catch (e) { console.log("PYERROR " + e.message); process.exit(1); }
"""

SCRIPT = r"""
import sys
sys.path.insert(0, '/')
import random
MODULES = %(modules)r
for name in MODULES:
    __import__(name)
from protocol import checks, close, frames
from protocol.ratelimit import TokenBucket
from widget.core import lifecycle as L
from widget.core.actions import *
from widget.core.client import Client, Page
from widget.core.settings import Settings

# protocol
assert checks.check_client_frame({"type": "message", "id": "m1", "text": "hi"}, 100)["id"] == "m1"
try:
    checks.check_client_frame({"type": "message", "id": "m1"}, 100)
    raise SystemExit("no FrameError")
except checks.FrameError as error:
    assert error.code == "missing_field"
assert close.classify(1013) == (close.SLOW, close.DRAINING)
assert close.classify(4201) == (close.SLOW, close.STORE_BUSY) and close.classify(4202) == (close.SLOW, close.ADDRESS_LIMITED)
assert close.probe_result({"allowed": False}) == close.PROBE_ORIGIN
bucket = TokenBucket(2, 1, 1)
assert bucket.take(0.0) and not bucket.take(0.1) and bucket.take(0.6)

# lifecycle: a scripted outage, then random inputs with the invariants
lc = L.Lifecycle(random=lambda: 0.5)
assert lc.start(0.0) == [OpenSocket(1), StartTimer("connect", 5.0), Render("connecting")]
lc.opened(0.2, 1)
assert lc.joined(0.25, 1)[2] == Render("connected")
lc.timer_fired(4.0, "heartbeat")
lc.timer_fired(8.0, "heartbeat")
assert lc.timer_fired(12.0, "heartbeat")[0] == CloseSocket(1, 4101, "heartbeat timeout")
assert lc.closed(12.1, 1, 1006, "", False) == []
assert lc.timer_fired(13.0, "retry")[0] == OpenSocket(2)
assert ProbeServer() in lc.closed(13.1, 2, 1006, "", False)
assert Render(L.FAILED, 2, None, "origin") in lc.probe_result(13.2, "origin_rejected")
try:
    lc.timer_fired(1, "bogus")
    raise SystemExit("no ValueError")
except ValueError:
    pass
assert L.Lifecycle(Settings(ping_interval=0)).start(0)[0] == Render(L.FAILED, 0, None, "config")
# with the server's beats: no ping while they arrive, one when late, dead 14 s after the last frame
lc = L.Lifecycle(random=lambda: 0.5)
lc.start(0.0)
lc.opened(0.0, 1)
lc.joined(0.0, 1, frames.read_heartbeat({"heartbeat": {"interval": 5, "idle_timeout": 300}}))
lc.received(3.0, 1, {"type": "beat"})
assert [a for a in lc.timer_fired(4.0, "heartbeat") if isinstance(a, Send)] == []
assert lc.timer_fired(10.0, "heartbeat")[0] == Send(1, {"type": "ping", "t": 10.0})
assert lc.timer_fired(13.0, "heartbeat")[0] == Send(1, {"type": "ping", "t": 13.0})
assert lc.timer_fired(13.01, "heartbeat")[0] == CloseSocket(1, 4101, "heartbeat timeout")
lc = L.Lifecycle()
now = 0.0
lc.start(now)
names = ["opened", "joined", "received", "closed", "errored", "timer", "went_offline", "went_online",
         "page_hidden", "page_visible", "retry_pressed", "probe", "stop", "start", "restart"]
r = random.random
for i in range(3000):
    now += r() * 5
    k = names[int(r() * len(names))]
    sid = lc.socket_id if r() < 0.8 else 1
    if k == "opened": acts = lc.opened(now, sid)
    elif k == "joined": acts = lc.joined(now, sid, (5, 300) if r() < 0.5 else None)
    elif k == "received": acts = lc.received(now, sid, {"type": "pong"})
    elif k == "closed":
        acts = lc.closed(now, sid, [1000, 1006, 1008, 1012, 1013, 4001, 4201, 4202][int(r() * 8)], "", True)
    elif k == "errored": acts = lc.errored(now, sid)
    elif k == "timer": acts = lc.timer_fired(now, L.TIMERS[int(r() * len(L.TIMERS))])
    elif k == "probe": acts = lc.probe_result(now, close.PROBE_RESULTS[int(r() * len(close.PROBE_RESULTS))])
    elif k == "restart": acts = lc.restart(now, "conversation full")
    else: acts = getattr(lc, k)(now)
    for a in acts:
        repr(a)
        if isinstance(a, Render): assert a.state in L.STATES
    assert lc.state in L.STATES or lc.state == L.IDLE
    if lc.state in (L.OFFLINE, L.FAILED, L.IDLE): assert not lc._timers

# the client: connect, welcome, send, acknowledge, diagnostics
ids = iter(["m1", "m2"])
client = Client({"socket_url": "/ws", "contact": {"email": "help@example.com"}},
                Page("https:", "shop.example.com", "https://shop.example.com"), lambda: next(ids))
acts = client.start(0.0, True, '{"session": "s1", "outbox": [{"id": "m0", "text": "saved"}]}')
assert OpenSocket(1, "wss://shop.example.com/ws?v=1") in acts
acts = client.socket_opened(0.1, 1)
assert Send(1, {"type": "hello", "last_seq": 0, "session": "s1"}) in acts
acts = client.socket_received(0.2, 1, '{"type": "welcome", "session": "s1", "resumed": true, "limits": {"messages": 20, "per": 10, "burst": 10}}')
assert Send(1, {"type": "message", "id": "m0", "text": "saved"}) in acts
acts = client.submitted(0.3, " hello ")
assert Send(1, {"type": "message", "id": "m1", "text": "hello"}) in acts and ClearInput() in acts
acts = client.socket_received(0.4, 1, '{"type": "ack", "id": "m1", "seq": 2}')
assert client.conversation.find("m1").delivery == "delivered"
for answered in ("m0", "m1"):
    client.frame_received(0.42, 1, {"type": "reply", "id": "r-" + answered, "in_reply_to": answered, "text": "ok"})
acts = client.submitted(0.45, "more")
acts = client.socket_received(0.46, 1, '{"type": "error", "code": "conversation_full", "id": "m2"}')
assert CloseSocket(1, 1000, "conversation full") in acts and OpenSocket(2, "wss://shop.example.com/ws?v=1") in acts
assert ShowNotice("conversation_full") in acts and client.conversation.find("m2").delivery == "queued"
assert Send(2, {"type": "hello", "last_seq": 0}) in client.socket_opened(0.47, 2)
report = client.diagnostics_json(0.5)
assert "hello" not in report and "wss://shop.example.com/ws?v=1" in report
assert "Chat widget diagnostics" in client.diagnostics_text(0.5)

# the client, idle until the panel opens; replies counted while closed, announced while open
client = Client({"socket_url": "/ws"}, Page("https:", "shop.example.com", "https://shop.example.com"), lambda: "m1")
acts = client.start(0.0, True, None)
assert acts[-1] == ShowStatus("idle", None, {}, None)
assert not [a for a in acts if isinstance(a, (OpenSocket, SaveSession, StartTimer))]
assert OpenSocket(1, "wss://shop.example.com/ws?v=1", "websocket") in client.panel_opened(1.0)
client.socket_opened(1.1, 1)
acts = client.socket_received(1.2, 1, '{"type": "welcome", "session": "s1", "resumed": false}')
assert SaveSession(None) in acts  # joined, nothing said: nothing kept
assert client.panel_closed(2.0) == []
acts = client.socket_received(2.1, 1, '{"type": "reply", "id": "r1", "in_reply_to": "m1", "text": "Hi", "seq": 1}')
assert ShowUnread(1, 1) in acts and ShowUnread(1, 0) != ShowUnread(1, 1)
acts = client.panel_opened(3.0)
assert ShowUnread(0, 1) in acts and SaveSession({"session": "s1", "read": 1, "seq": 1, "outbox": []}) in acts
acts = client.socket_received(3.1, 1, '{"type": "reply", "id": "r2", "in_reply_to": "m1", "text": "Again", "seq": 2}')
assert Announce("Again") in acts
# the next page: a saved seq reconnects without opening; the replay is counted, only newer replies are fresh
client = Client({"socket_url": "/ws"}, Page("https:", "shop.example.com", "https://shop.example.com"), lambda: "m1")
acts = client.start(0.0, True, '{"session": "s1", "read": 1, "seq": 2, "outbox": []}')
assert OpenSocket(1, "wss://shop.example.com/ws?v=1") in acts
client.socket_opened(0.1, 1)
client.socket_received(0.2, 1, '{"type": "welcome", "session": "s1", "resumed": true}')
acts = client.socket_received(0.3, 1, '{"type": "reply", "id": "r2", "in_reply_to": "m1", "text": "Again", "seq": 2}')
assert ShowUnread(1, 0) in acts
acts = client.socket_received(0.4, 1, '{"type": "reply", "id": "r3", "in_reply_to": "m1", "text": "New", "seq": 3}')
assert ShowUnread(2, 1) in acts
# a session where nothing was said does not reconnect; an expired one with nothing waiting is forgotten
for saved in ('{"session": "s1", "read": 0, "seq": 0, "outbox": []}', ""):
    client = Client({"socket_url": "/ws"}, Page("https:", "shop.example.com", "https://shop.example.com"), lambda: "m1")
    assert client.start(0.0, True, saved)[-1] == ShowStatus("idle", None, {}, None)
client = Client({"socket_url": "/ws"}, Page("https:", "shop.example.com", "https://shop.example.com"), lambda: "m1")
client.start(0.0, True, '{"session": "old", "read": 3, "seq": 3, "outbox": []}')
client.socket_opened(0.1, 1)
acts = client.socket_received(0.2, 1, '{"type": "welcome", "session": "new", "resumed": false}')
assert SaveSession(None) in acts and not client.conversation.in_progress

# words: a small catalogue, then the shipped ones (read with MicroPython's json)
import json
from widget.core.words import Words, fill
words = Words({"status": {"idle": "Ready"}, "alerts": {"origin": ["Not allowed", ["Ask the site"]]},
               "contact": {"email": "Email: "}, "reconnect_now": "Now ({attempt})",
               "reconnect_in": "In {seconds} s ({attempt})", "typing": "Typing\u2026"})
assert words.status("idle") == "Ready" and words.text("typing") == "Typing\u2026"
assert words.alert("origin") == ("Not allowed", ["Ask the site"])
assert words.contact("email") == "Email: "
assert words.reconnect_text(2, None) == "Now (2)" and words.reconnect_text(3, 4) == "In 4 s (3)"
assert fill("{a} and {b}", a=1) == "1 and {b}"
for lang in ("en", "de"):
    with open("/widget/lang/" + lang + ".json") as f:
        shipped = Words(json.load(f))
    assert shipped.status("connected") and shipped.alert("origin")[1] and shipped.contact("phone")
    assert "3" in shipped.reconnect_text(3, 7)
    assert shipped.alert("busy")[1] and shipped.alert("limited")[1] and shipped.text("conversation_full")
assert Words(None).catalogue == {}

# the HTTP fallback's channel
from widget.core.polling import PollChannel, Opened, Frame, Closed
channel = PollChannel("https://shop.example.com/poll")
channel.open()
assert channel.answered("open", 200, '{"channel": "c1"}')[0] == Opened()
acts = channel.answered("poll", 200, '{"from": 0, "frames": [{"type": "pong"}]}')
assert acts[0] == Frame({"type": "pong"}) and acts[1].url == "https://shop.example.com/poll/c1?from=1"
assert channel.answered("poll", 200, '{"from": 1, "frames": [], "close": {"code": 1012}}') == [Closed(1012, "", True)]
print("MPY-OK", sys.implementation.name, sys.implementation.version[:2], len(MODULES))
"""


def browser_modules():
    """Every module of the pure packages, as (relative path, source)."""
    files = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).glob("*.py")):
            files.append((str(path.relative_to(ROOT)), path.read_text(encoding="utf-8")))
    return files


@pytest.mark.skipif(not (shutil.which("node") and MPY.exists()),
                    reason="node or the MicroPython wasm package (npm) is not installed")
def test_core_and_protocol_run_unchanged_under_micropython(tmp_path):
    """Every module of widget/core and protocol imports and works under the real MicroPython 1.28."""
    import json

    files = browser_modules()
    modules = [path[:-3].replace("/", ".").replace(".__init__", "") for path, _ in files]
    assert "widget.core.client" in modules and "widget.core.words" in modules and "protocol.frames" in modules
    catalogues = [(str(path.relative_to(ROOT)), path.read_text(encoding="utf-8"))
                  for path in sorted((ROOT / "widget" / "lang").glob("*.json"))]
    (tmp_path / "files.json").write_text(json.dumps(files + catalogues))
    (tmp_path / "check.py").write_text(SCRIPT % {"modules": modules})
    runner = tmp_path / "run.mjs"
    runner.write_text(RUNNER % {"mjs": repr("file://" + str(MPY)), "files": repr(str(tmp_path / "files.json")),
                                "script": repr(str(tmp_path / "check.py"))})
    proc = subprocess.run(["node", str(runner)], capture_output=True, text=True, timeout=60)
    assert f"MPY-OK micropython (1, 28) {len(modules)}" in proc.stdout, proc.stdout + proc.stderr[-2000:]


def test_pure_packages_import_nothing_from_the_browser_or_the_server():
    """widget/core and protocol never import js, pyscript, server or the shell; the server never imports widget."""
    import re

    forbidden = re.compile(r"^\s*(?:from|import)\s+(js|pyscript|server|widget\.shell)\b", re.M)
    for path, text in browser_modules():
        assert not forbidden.search(text), f"{path} imports {forbidden.search(text).group(1)}"
    assert not any(path.startswith("protocol/") and re.search(r"^\s*(?:from|import)\s+widget\b", text, re.M)
                   for path, text in browser_modules())
    for path in (ROOT / "server").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(?:from|import)\s+widget\b", text, re.M), f"{path} imports the widget"
