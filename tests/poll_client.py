"""The widget's side of the HTTP fallback (docs/protocol.md, "HTTP fallback"), for tests over real HTTP."""

import contextlib
import json

import httpx

TEXT = {"Content-Type": "text/plain;charset=UTF-8"}  # a CORS "simple request", as the widget sends


def client(server, timeout=40.0):
    """An HTTP client for the server in ``server`` (a ServerProcess); polls may be held 25 s."""
    return httpx.AsyncClient(base_url=server.url, timeout=timeout)


def _not_json(name):
    raise ValueError(f"{name} is not JSON")


class PollChannel:
    """One channel, used as the widget uses it: ``next`` is the number of the next frame it needs."""

    def __init__(self, http, origin):
        self.http = http
        self.origin = origin
        self.id = None
        self.next = 0
        self.close = None  # {"code", "reason"} once the open answer or a poll carried it
        self._unread = []  # frames polled and not yet handed out by receive_until

    @property
    def headers(self):
        return {"Origin": self.origin} if self.origin else {}

    async def open(self, query="?v=1"):
        """POST /poll: a channel, or (server full, another version) its close and no channel."""
        answer = await self.http.post("/poll" + query, headers=self.headers)
        if answer.status_code == 200:
            self.id = answer.json().get("channel")
            self.close = answer.json().get("close")
        return answer

    async def send(self, frame):
        """POST one frame (a dict, or the exact text/bytes to send); the HTTP answer."""
        body = json.dumps(frame) if isinstance(frame, dict) else frame
        return await self.http.post(f"/poll/{self.id}", content=body, headers={**self.headers, **TEXT})

    async def poll(self, start=None, sent=None):
        """One poll from ``start`` (default: the next frame needed); its decoded answer.

        ``sent``, an asyncio.Event, is set once the request is on its way, for a test that acts while
        the poll is held.
        """
        async def trace(event, info):
            if event == "http11.send_request_body.complete":
                sent.set()

        answer = await self.http.get(f"/poll/{self.id}", params={"from": self.next if start is None else start},
                                     headers=self.headers, extensions={"trace": trace} if sent else {})
        assert answer.status_code == 200, (answer.status_code, answer.text)
        body = json.loads(answer.text, parse_constant=_not_json)  # as strict as the widget's JSON.parse
        if start is None:
            self.next += len(body["frames"])
        self.close = body.get("close", self.close)
        return body

    async def receive(self):
        """The next frame (polling as long as it takes), or None once the channel is closed."""
        while not self._unread:
            if self.close is not None:
                return None
            self._unread = (await self.poll())["frames"]
        return self._unread.pop(0)

    async def receive_until(self, kind=None):
        """Frames up to and including the first of type ``kind``, or all of them up to the close."""
        frames = []
        while kind is None or not frames or frames[-1]["type"] != kind:
            frame = await self.receive()
            if frame is None:
                break
            frames.append(frame)
        return frames

    async def join(self, **hello):
        """hello -> welcome: the start of every conversation."""
        assert (await self.send({"type": "hello", **hello})).status_code == 204
        welcome = (await self.receive_until("welcome"))[-1]
        assert welcome["type"] == "welcome", welcome
        return welcome

    async def end(self):
        """POST /close; None when no channel was opened."""
        if self.id is None:
            return None
        return await self.http.post(f"/poll/{self.id}/close", headers=self.headers)


@contextlib.asynccontextmanager
async def opened(http, origin, query="?v=1"):
    """An open channel, closed again afterwards (the per-address limit counts open channels)."""
    channel = PollChannel(http, origin)
    answer = await channel.open(query)
    assert answer.status_code == 200 and channel.id, (answer.status_code, answer.text)
    try:
        yield channel
    finally:
        await channel.end()
