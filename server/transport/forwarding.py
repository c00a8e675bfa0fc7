"""Forwarding the HTTP fallback's requests to the instance that owns the channel, through Redis.

A channel lives in one process: its connection runs there (server/transport/channels.py). Behind a
proxy without sticky sessions the widget's next request may reach any instance, so channel ids name
their owner (``<instance>.<random>``) and an instance asked about another's channel forwards the
request to it, one message each way:

- the asking instance publishes the request (method, path, query, the headers that matter, the
  client's address, the body) on ``chat:rpc:<owner>``, only while the owner's liveness key
  ``chat:instance:<owner>`` exists (one script, one round trip);
- the owner runs it through its own app as if it had arrived there (same checks, same CORS headers,
  a long poll held as long as any other) and publishes the answer on ``chat:reply:<asker>``, the one
  reply subscription of the asking instance, which hands it to the waiting request by its id;
- no owner (it stopped, was killed, or its key expired) or no answer within the poll's hold time plus
  ``MARGIN``: ``forward`` returns None and the route answers 404 ``unknown_channel``, so the widget
  opens a new channel and resumes with replay, as after any lost connection. A poll already held when
  its owner dies ends so within ``ALIVE_TTL`` + ``REFRESH_EVERY`` seconds (every second each instance
  looks up the liveness keys of the owners it waits on), and an instance that starts draining answers
  the requests it is still forwarding that way at once.

A message is a JSON head, a newline, then the body's bytes as they are (a frame or a poll's JSON).
Installed only with a shared store (``redis://``, ``rediss://``): alone, an instance has nothing to forward.
"""

import asyncio
import contextvars
import itertools
import json
import logging

import redis.asyncio
from quart import Response, request
from redis.exceptions import RedisError

log = logging.getLogger("chat_widget.forwarding")

RPC = "chat:rpc:{}"            # requests for this instance's channels
REPLY = "chat:reply:{}"        # answers to the requests this instance forwarded
ALIVE = "chat:instance:{}"     # exists while the instance runs
ALIVE_TTL = 4                  # seconds the liveness key outlives the instance's last refresh
REFRESH_EVERY = 1.0            # seconds between refreshes
REDIS_TIMEOUT = 2.0            # seconds for a Redis command before it counts as failed
MARGIN = 5.0                   # seconds past a poll's hold time before the asking instance gives up
FORWARDED_HEADERS = ("Origin", "Content-Type", "Host")  # the rest: this instance answers as the owner would

# Publish only while the owner's liveness key exists; the number of owners that got it (0: gone).
_PUBLISH_IF_ALIVE = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
return redis.call('publish', ARGV[1], ARGV[2])
"""


def install(app, config):
    """Forward requests for other instances' channels when instances share the store through Redis."""
    if config.store_kind != "redis":
        return
    forwarding = ChannelForwarding(config.store, app.extensions["chat_instance_id"], app)
    app.extensions["chat_forwarding"] = forwarding
    app.before_serving(forwarding.start)
    app.after_serving(forwarding.stop)


def _pack(head, body):
    return json.dumps(head).encode() + b"\n" + body


def _unpack(data):
    head, _, body = data.partition(b"\n")
    return json.loads(head), body


def _settle(future, answer):
    if not future.done():
        future.set_result(answer)


class ChannelForwarding:
    """This instance's end of the forwarding: it asks other owners, and answers for its own channels."""

    def __init__(self, redis_url, instance_id, app):
        self.instance_id = instance_id
        self.app = app
        # Short timeouts, as the store's: a Redis that stops answering must not hold a request or the
        # shutdown (pub/sub reads have their own wait; this client only publishes and sets keys).
        self._redis = redis.asyncio.from_url(redis_url, socket_connect_timeout=REDIS_TIMEOUT,
                                             socket_timeout=REDIS_TIMEOUT)
        self._publish_if_alive = self._redis.register_script(_PUBLISH_IF_ALIVE)
        self._pubsub = None
        self._waiting = {}          # request id -> (owner, future of the owner's (head, body))
        self._ids = itertools.count()
        self._serving = set()       # tasks answering other instances' requests
        self._background = []
        self._releasing = False     # draining: no more waiting on owners

    async def start(self):
        self._pubsub = self._redis.pubsub()
        await self._pubsub.subscribe(RPC.format(self.instance_id), REPLY.format(self.instance_id))
        await self._redis.set(ALIVE.format(self.instance_id), 1, ex=ALIVE_TTL)
        self._background = [asyncio.create_task(self._listen()), asyncio.create_task(self._heartbeat())]

    def release(self):
        """Draining: the requests waiting on an owner get None now (404 for the widget), later ones at once."""
        self._releasing = True
        for _, future in self._waiting.values():
            _settle(future, None)

    async def stop(self):
        # Our channels are closed first (idempotent): polls held for other instances answer with 1012.
        from ..app import start_draining

        await start_draining(self.app)
        self.release()
        for task in [*self._background, *self._serving]:
            task.cancel()
        await asyncio.gather(*self._background, *self._serving, return_exceptions=True)
        try:
            await self._redis.delete(ALIVE.format(self.instance_id))
        except RedisError as error:
            log.warning("liveness key not removed: %s", error)
        if self._pubsub is not None:
            await self._pubsub.aclose()
        await self._redis.aclose()

    # ---- asking ----------------------------------------------------------------------------------
    async def forward(self, owner):
        """The current request, answered by instance ``owner``: a Response, or None when the owner is
        gone or gave no answer within the request's hold time plus MARGIN."""
        if self._pubsub is None or self._releasing:
            return None
        hold = self.app.extensions["chat_channels"].poll_timeout if request.method == "GET" else 0
        head = {"id": str(next(self._ids)), "reply_to": self.instance_id, "method": request.method,
                "scheme": request.scheme, "path": request.path, "query": request.query_string.decode("latin-1"),
                "headers": [[name, request.headers[name]] for name in FORWARDED_HEADERS if name in request.headers],
                "client": request.remote_addr}
        body = await _body(self.app.extensions["chat_config"].max_message_bytes + 1)
        future = asyncio.get_running_loop().create_future()
        self._waiting[head["id"]] = (owner, future)
        try:
            if not await self._publish_if_alive(keys=[ALIVE.format(owner)], args=[RPC.format(owner), _pack(head, body)]):
                return None  # no such instance (a forged id), or it is gone: the channel went with it
            answer = await asyncio.wait_for(future, hold + MARGIN)
        except TimeoutError:
            log.warning("forwarded request unanswered owner=%s after=%ss", owner, hold + MARGIN)
            return None
        except RedisError as error:
            log.warning("request not forwarded owner=%s: %s", owner, error)
            return None
        finally:
            self._waiting.pop(head["id"], None)
        if answer is None:
            return None
        reply, content = answer
        return Response(content, status=reply["status"], headers=reply["headers"])

    # ---- answering -------------------------------------------------------------------------------
    async def _serve(self, head, body):
        """Run another instance's request through this app, as uvicorn would hand it over; publish the answer."""
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
                 "method": head["method"], "scheme": head["scheme"], "path": head["path"],
                 "raw_path": head["path"].encode(), "query_string": head["query"].encode("latin-1"),
                 "root_path": "", "client": (head["client"], 0), "server": None, "extensions": {},
                 "headers": [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in head["headers"]]
                 + [(b"content-length", str(len(body)).encode())]}
        incoming = [{"type": "http.request", "body": body, "more_body": False}]
        answer = {"id": head["id"], "status": 500, "headers": []}
        content = bytearray()

        async def receive():
            if incoming:
                return incoming.pop()
            await asyncio.Event().wait()  # the client never leaves: the request ends by itself

        async def send(message):
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
                answer["headers"] = [[name.decode("latin-1"), value.decode("latin-1")]
                                     for name, value in message.get("headers", ())
                                     if name.lower() not in (b"content-length", b"transfer-encoding")]
            elif message["type"] == "http.response.body":
                content.extend(message.get("body", b""))

        await self.app(scope, receive, send)
        try:
            await self._redis.publish(REPLY.format(head["reply_to"]), _pack(answer, bytes(content)))
        except RedisError as error:
            log.warning("answer not sent back instance=%s: %s", head["reply_to"], error)

    async def _listen(self):
        """Requests for our channels start a task each; answers go to the requests waiting for them."""
        requests = RPC.format(self.instance_id).encode()
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            except (RedisError, OSError) as error:
                log.warning("forwarding subscription lost, retrying: %s", error)
                await asyncio.sleep(REFRESH_EVERY)
                continue
            if message is None or message["type"] != "message":
                continue
            try:
                head, body = _unpack(message["data"])
            except ValueError:  # not one of ours: nothing to answer
                log.warning("unreadable forwarding message on %s", message["channel"])
                continue
            if message["channel"] == requests:
                # A fresh context, as a request arriving from the network has.
                task = asyncio.create_task(self._serve(head, body), context=contextvars.Context())
                self._serving.add(task)
                task.add_done_callback(self._serving.discard)
            elif head.get("id") in self._waiting:
                _settle(self._waiting[head["id"]][1], (head, body))

    async def _heartbeat(self):
        """Every REFRESH_EVERY s: our liveness key refreshed; the requests waiting on an owner whose key
        is gone answered None (an owner that was killed answers nothing)."""
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            owners = sorted({owner for owner, _ in self._waiting.values()})
            try:
                await self._redis.set(ALIVE.format(self.instance_id), 1, ex=ALIVE_TTL)
                alive = await self._redis.mget([ALIVE.format(owner) for owner in owners]) if owners else []
            except RedisError as error:
                log.warning("liveness keys not refreshed or read: %s", error)
                continue
            gone = {owner for owner, key in zip(owners, alive) if key is None}
            if gone:
                log.info("channel owners gone instances=%s", ",".join(sorted(gone)))
            for owner, future in list(self._waiting.values()):
                if owner in gone:
                    _settle(future, None)


async def _body(limit):
    """The request body, at most ``limit`` bytes: enough for the owner to refuse a frame too large."""
    data = bytearray()
    async for chunk in request.body:
        data += chunk
        if len(data) >= limit:
            break
    return bytes(data[:limit])
