"""How frames reach the sockets watching a session: the bus.

A reply belongs to the session, not to a socket: whoever watches the session when a frame is
published receives it. Replies stream: ``reply_start`` and ``reply_chunk`` frames as the consultant
writes, then the stored ``reply``. A socket that starts watching mid-reply first receives the reply so
far (``watch`` returns it) and then the chunks that follow, each once.

``LocalBus`` is the bus of one process: a table of watchers and of the replies streaming. Several
instances use ``RedisBus`` (``redis_store.py``), with the same methods: a frame published on one
instance reaches the watchers on every instance.
"""


class LocalBus:
    on_gap = None  # a shared bus calls it with the sessions whose frames may have been missed (never here)

    def __init__(self):
        self.watchers = {}    # session id -> set of async send(frame) callables
        self.streaming = {}   # session id -> {reply id: reply_start frame with the text so far}

    async def start(self):
        pass

    async def stop(self):
        pass

    async def watch(self, session_id, send):
        """``send`` receives the session's frames from now on; returns the replies streaming now (as
        ``reply_start`` frames with their text so far), which ``send`` should receive first."""
        self.watchers.setdefault(session_id, set()).add(send)
        return [dict(frame) for frame in self.streaming.get(session_id, {}).values()]

    def unwatch(self, session_id, send):
        watchers = self.watchers.get(session_id)
        if watchers is not None:
            watchers.discard(send)
            if not watchers:
                del self.watchers[session_id]

    async def publish(self, session_id, frame):
        await self.deliver(session_id, frame)

    async def deliver(self, session_id, frame):
        """To this process's watchers of the session."""
        for send in list(self.watchers.get(session_id, ())):
            try:
                await send(frame)
            except Exception:  # a socket closing under us; its own handler cleans up
                self.unwatch(session_id, send)

    async def stream_started(self, session_id, frame):
        """A ``reply_start`` frame: remembered for late watchers, and published."""
        self.streaming.setdefault(session_id, {})[frame["id"]] = dict(frame)
        await self.publish(session_id, dict(frame))

    async def stream_chunk(self, session_id, frame):
        """A ``reply_chunk`` frame: added to the reply so far, and published."""
        partial = self.streaming.get(session_id, {}).get(frame["id"])
        if partial is not None:
            partial["text"] += frame["text"]
        await self.publish(session_id, frame)

    async def stream_ended(self, session_id, reply_id):
        """The reply is stored (its ``reply`` frame replaces the stream): late watchers no longer need it."""
        self.stream_abandoned(session_id, reply_id)

    def stream_abandoned(self, session_id, reply_id):
        """This process stopped writing the reply without storing it (cancelled, or the store failed;
        callable from a task being cancelled): in one process nobody else will, so it is forgotten and
        the question is answered again under a new reply id."""
        streams = self.streaming.get(session_id, {})
        streams.pop(reply_id, None)
        if not streams:
            self.streaming.pop(session_id, None)
