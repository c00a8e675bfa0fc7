"""Live conversations: the sockets watching each session, and the replies being produced.

A reply belongs to the session, not to the socket that asked: if the visitor's connection drops
while the consultant is answering, the answer is still stored, and the widget receives it when it
reconnects (replay). Several sockets may watch one session (a duplicated tab shares its storage).
"""

import asyncio
import itertools
import logging
import secrets

from protocol import frames

log = logging.getLogger("chat_widget.conversations")

SORRY = "Sorry, I couldn't answer that just now. Please try again in a moment."
CUT_OFF = "\n\n(The answer was interrupted. Please ask again if you need more.)"


class Conversations:
    def __init__(self, store, consultant, reply_timeout=60.0):
        self.store = store
        self.consultant = consultant
        self.reply_timeout = reply_timeout
        self.watchers = {}    # session id -> set of async send(frame) callables
        self.answering = {}   # (session id, message id) -> task
        self.streaming = {}   # session id -> {reply id: frame so far} for late joiners
        self._reply_ids = itertools.count(1)
        self._reply_prefix = secrets.token_hex(4)  # reply ids stay unique across restarts

    # ---- sessions ------------------------------------------------------------------------------
    async def open_session(self, session_id, last_seq, origin):
        """Resume the session if it is known for this origin, else start a new one.

        Returns ``(session_id, resumed, expired, entries_to_replay)``.
        """
        if session_id is not None and await self.store.find_session(session_id, origin):
            server_seq = await self.store.last_seq(session_id)
            if last_seq <= server_seq:
                return session_id, True, False, await self.store.entries_after(session_id, last_seq)
        new_id = await self.store.create_session(origin)
        return new_id, False, session_id is not None, []

    def watch(self, session_id, send):
        self.watchers.setdefault(session_id, set()).add(send)
        return [dict(frame) for frame in self.streaming.get(session_id, {}).values()]

    def unwatch(self, session_id, send):
        watchers = self.watchers.get(session_id)
        if watchers is not None:
            watchers.discard(send)
            if not watchers:
                del self.watchers[session_id]

    async def publish(self, session_id, frame):
        for send in list(self.watchers.get(session_id, ())):
            try:
                await send(frame)
            except Exception:  # a socket closing under us; its own handler cleans up
                self.unwatch(session_id, send)

    # ---- messages ------------------------------------------------------------------------------
    async def visitor_message(self, session_id, message_id, text, lang=None):
        """Store (once) and answer (once), in the widget's language ``lang``. Returns the stored entry."""
        entry, is_new = await self.store.add_visitor_message(session_id, message_id, text)
        if is_new:
            self.start_answer(session_id, message_id, lang)
        return entry

    async def answer_unanswered(self, session_id, lang=None):
        """After a crash or restart, answer what was stored but never answered."""
        for message_id in await self.store.unanswered(session_id):
            self.start_answer(session_id, message_id, lang)

    def start_answer(self, session_id, message_id, lang=None):
        key = (session_id, message_id)
        if key in self.answering:
            return
        task = asyncio.create_task(self._answer(session_id, message_id, lang))
        self.answering[key] = task
        task.add_done_callback(lambda _: self.answering.pop(key, None))

    async def _answer(self, session_id, message_id, lang):
        reply_id = f"r{self._reply_prefix}-{next(self._reply_ids)}"
        history = []
        for entry in await self.store.entries_after(session_id, 0):
            history.append({"author": entry.author, "text": entry.text})
            if entry.author == "visitor" and entry.id == message_id:
                break  # the question and what came before it, not later questions
        partial = frames.reply_start(reply_id, message_id)
        self.streaming.setdefault(session_id, {})[reply_id] = partial
        await self.publish(session_id, dict(partial))
        try:
            text = await asyncio.wait_for(self._stream(session_id, reply_id, history, partial, lang), self.reply_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a consultant failure must never reach the socket
            log.warning("consultant failed consultant=%s error=%s: %s", self.consultant.name, type(error).__name__, error)
            log.debug("consultant failure detail", exc_info=True)
            # Keep what the visitor already saw stream in; the stored reply replaces the stream.
            text = partial["text"] + CUT_OFF if partial["text"].strip() else SORRY
        finally:
            streams = self.streaming.get(session_id, {})
            streams.pop(reply_id, None)
            if not streams:
                self.streaming.pop(session_id, None)
        if not text.strip():
            text = SORRY
        entry = await self.store.add_reply(session_id, reply_id, message_id, text)
        await self.publish(session_id, entry.frame(live=True))

    async def _stream(self, session_id, reply_id, history, partial, lang):
        chunks = []
        async for chunk in self.consultant.reply(history, lang):
            if not chunk:
                continue
            chunks.append(chunk)
            partial["text"] += chunk
            await self.publish(session_id, frames.reply_chunk(reply_id, chunk))
        return "".join(chunks)

    async def drain(self, timeout):
        """At shutdown: let replies in flight finish (they are stored) for up to ``timeout`` s."""
        tasks = list(self.answering.values())
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
