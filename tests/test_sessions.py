"""Sessions over the socket: resume with replay, dedup of resends, origin binding, expiry."""

import asyncio
import json


from test_server import ALLOWED, join, receive_until


async def ask(socket, message_id, text):
    await socket.send(json.dumps({"type": "message", "id": message_id, "text": text}))
    return await receive_until(socket, "reply")


async def test_message_before_hello_is_refused(client):
    """A message sent before hello gets hello_required and is not stored."""
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        await socket.send(json.dumps({"type": "message", "id": "m1", "text": "hi"}))
        error = json.loads(await socket.receive())
    assert error["code"] == "hello_required"


async def test_resume_replays_only_what_was_missed(client):
    """Reconnecting with the last seq seen replays the later entries, in order."""
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        session = (await join(socket))["session"]
        await ask(socket, "m1", "When are you open?")
        await ask(socket, "m2", "Do you deliver?")
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        welcome = await join(socket, session=session, last_seq=2)
        replay = [json.loads(await socket.receive()) for _ in range(2)]
    assert welcome["resumed"] is True and welcome["last_seq"] == 4
    assert [(f["type"], f["seq"]) for f in replay] == [("message", 3), ("reply", 4)]
    assert replay[0]["text"] == "Do you deliver?"


async def test_reload_replays_whole_conversation(client):
    """last_seq 0 (a reloaded page) gets every entry, visitor and consultant, in order."""
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        session = (await join(socket))["session"]
        await ask(socket, "m1", "hello")
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        welcome = await join(socket, session=session, last_seq=0)
        replay = [json.loads(await socket.receive()) for _ in range(welcome["last_seq"])]
    assert [f["type"] for f in replay] == ["message", "reply"]


async def test_resend_after_lost_ack_is_stored_and_answered_once(client):
    """The same message id sent again (ack lost) is acked with the same seq and gets no second reply."""
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        session = (await join(socket))["session"]
        await ask(socket, "m1", "Do you deliver?")
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        await join(socket, session=session, last_seq=2)
        await socket.send(json.dumps({"type": "message", "id": "m1", "text": "Do you deliver?"}))
        assert json.loads(await socket.receive()) == {"type": "ack", "id": "m1", "seq": 1}
        await socket.send(json.dumps({"type": "ping", "t": 1}))
        assert json.loads(await socket.receive()) == {"type": "pong", "t": 1}  # no second reply came first


async def test_reply_produced_while_disconnected_is_replayed(app, client):
    """A reply finished after the socket dropped is stored and shown on reconnect."""
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        session = (await join(socket))["session"]
        await socket.send(json.dumps({"type": "message", "id": "m1", "text": "What are your prices?"}))
        await receive_until(socket, "ack")
    conversations = app.extensions["chat_conversations"]
    await asyncio.gather(*conversations.answering.values())
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        await join(socket, session=session, last_seq=1)
        reply = json.loads(await socket.receive())
    assert reply["type"] == "reply" and reply["in_reply_to"] == "m1" and reply["seq"] == 2


async def test_other_origin_cannot_resume_session(make_app):
    """A session id presented from another allowed origin starts a fresh session instead."""
    client = make_app(allow_origins=["https://a.example.com", "https://b.example.com"]).test_client()
    async with client.websocket("/ws", headers={"Origin": "https://a.example.com"}) as socket:
        session = (await join(socket))["session"]
    async with client.websocket("/ws", headers={"Origin": "https://b.example.com"}) as socket:
        welcome = await join(socket, session=session)
    assert welcome["resumed"] is False and welcome["session"] != session and welcome["expired"] is True


async def test_unknown_or_expired_session_starts_fresh_and_says_so(client):
    """An unknown session id gets a new session with expired=true so the widget can tell the visitor."""
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        welcome = await join(socket, session="x" * 32, last_seq=7)
    assert welcome["resumed"] is False and welcome["expired"] is True and welcome["last_seq"] == 0


async def test_streamed_reply_frames(client):
    """A reply streams as reply_start, chunks, then the stored reply with the full text."""
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        await join(socket)
        frames = await ask(socket, "m1", "hello")
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "ack" and kinds[1] == "reply_start" and kinds[-1] == "reply"
    chunks = "".join(f["text"] for f in frames if f["type"] == "reply_chunk")
    assert chunks == frames[-1]["text"]


async def test_reply_started_for_one_socket_reaches_the_socket_that_replaced_it(make_app):
    """A reply still being produced when the socket drops is delivered to the visitor's next socket."""
    client = make_app(allow_origins=["https://shop.example.com"], faults="reply_delay=0.3").test_client()
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        session = (await join(socket))["session"]
        await socket.send(json.dumps({"type": "message", "id": "m1", "text": "Do you deliver?"}))
        await receive_until(socket, "reply_start")
    async with client.websocket("/ws", headers=ALLOWED) as socket:
        await join(socket, session=session, last_seq=1)
        frames = await receive_until(socket, "reply")
    assert frames[0]["type"] == "reply_start" and frames[-1]["in_reply_to"] == "m1"


class _Recorder:
    """What a socket would have sent, decoded."""

    def __init__(self):
        self.sent = []

    async def send(self, text):
        self.sent.append(json.loads(text))


async def test_a_reply_stored_while_a_hello_reads_its_replay_reaches_that_socket_once():
    """The reply lands between the replay's read and the socket joining the live frames (with Redis, a
    few round trips): it is sent after the replay, once, not lost until the next reconnect."""
    from server.config import Config
    from server.conversations import Conversations, MemoryStore
    from server.transport.socket import ChatConnection

    class ReplyDuringReplay(MemoryStore):
        hook = None

        async def entries_after(self, session_id, seq):
            entries = await super().entries_after(session_id, seq)
            if self.hook is not None and seq > 0:  # the replay's read (last_seq reads from 0)
                hook, self.hook = self.hook, None
                await hook()
            return entries

    store = ReplyDuringReplay()
    conversations = Conversations(store, consultant=None)
    origin = "https://shop.example.com"
    session = await store.create_session(origin)
    await store.add_visitor_message(session, "m1", "Do you ship abroad?")

    async def answer_now():
        entry, _ = await store.add_reply(session, "r1", "m1", "Yes, to 30 countries.")
        await conversations.publish(session, entry.frame(live=True))

    store.hook = answer_now
    socket = _Recorder()
    connection = ChatConnection(socket, Config(store="memory"), conversations, origin)
    await connection.hello({"type": "hello", "session": session, "last_seq": 1})
    assert [frame["type"] for frame in socket.sent] == ["welcome", "reply"]
    assert socket.sent[1]["id"] == "r1"
    connection.leave()


async def test_a_reply_whose_store_answer_was_lost_is_published_once_without_asking_again():
    """The store stored the reply but its answer never came back (Redis's connection broke): the written
    reply is stored again (the store returns the one it has) and published; the consultant is asked once."""
    from server.conversations import Conversations, MemoryStore
    from server.conversations.store import StoreUnavailable

    class LosesFirstAnswer(MemoryStore):
        lost = False

        async def add_reply(self, *args):
            result = await super().add_reply(*args)
            if not self.lost:
                self.lost = True
                raise StoreUnavailable("connection lost after the write")
            return result

    class Consultant:
        name = "counting"
        asked = 0

        async def reply(self, history, lang=None):
            Consultant.asked += 1
            yield "Yes, to 30 countries."

    store = LosesFirstAnswer()
    conversations = Conversations(store, Consultant())
    session = await store.create_session("https://shop.example.com")
    published = []

    async def watcher(frame):
        published.append(frame)

    await conversations.watch(session, watcher)
    await conversations.visitor_message(session, "m1", "Do you ship abroad?")
    async with asyncio.timeout(10):
        while not any(frame["type"] == "reply" for frame in published):
            await asyncio.sleep(0.05)
    assert [f["type"] for f in published if f["type"] == "reply"] == ["reply"]
    assert Consultant.asked == 1
    assert [e.author for e in await store.entries_after(session, 0)] == ["visitor", "consultant"]
