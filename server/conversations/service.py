"""Live conversations: the sockets watching each session, and the replies being produced.

A reply belongs to the session, not to the socket that asked: if the visitor's connection drops
while the consultant is answering, the answer is still stored, and the widget receives it when it
reconnects (replay). Several sockets may watch one session (a duplicated tab shares its storage).

Every connection passes through here whatever its transport and every write whatever the store, so
the budgets that no visitor may exceed are kept here (``server/budgets.py``): new conversations per
address and the store's budget (``NewConversationRefused``), consultant replies per address (past it
a short answer stands in for the consultant's), and the consultant answers one question at a time
per address, so that a burst from many sockets of one address waits its turns instead of filling the
event loop ahead of everyone else. A conversation's own byte budget is the store's
(``ConversationFull``).
"""

import asyncio
import itertools
import logging
import math
import secrets
import time

from protocol import close, frames

from .. import languages
from .store import StoreUnavailable

log = logging.getLogger("chat_widget.conversations")

SORRY = "Sorry, I couldn't answer that just now. Please try again in a moment."
CUT_OFF = "\n\n(The answer was interrupted. Please ask again if you need more.)"
# Past the address's reply budget: stored as the reply, without asking the consultant.
TOO_FAST = {
    "en": "You're asking faster than I can answer. Please wait a minute, then ask me again.",
    "de": "Sie fragen schneller, als ich antworten kann. Bitte warten Sie eine Minute und fragen Sie dann noch einmal.",
}
TAKEOVERS_AT_ONCE = 4  # consultant replies for taken-over questions in progress at once per instance
GIVE_UP_AFTER = 600  # seconds without a store before a question is left to the visitor's next reconnect
STORE_BUSY = "the chat service is very busy and cannot start new conversations now; try again later"


class NewConversationRefused(Exception):
    """A new conversation may not start now: close with ``code`` (4201, 4202: the widget tries later)."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class Conversations:
    def __init__(self, store, consultant, reply_timeout=60.0, budgets=None, store_budget=None, waiting_replies=4,
                 reply_lease=10.0, clock=time.monotonic):
        """``budgets``: an ``AddressBudgets`` (None: no per-address budgets); ``store_budget``: a
        ``StoreBudget``, kept up to date by the app (None: no store budget); ``waiting_replies``: how many
        consultant replies of one address may wait behind the one in progress (beyond, TOO_FAST);
        ``reply_lease``: seconds an instance holds the right to answer a question without renewing it
        (a shared store: if the instance dies mid-reply, another answers once the lease lapses)."""
        self.store = store
        self.consultant = consultant
        self.reply_timeout = reply_timeout
        self.budgets = budgets
        self.store_budget = store_budget
        self.waiting_replies = waiting_replies
        self.reply_lease = reply_lease
        self.clock = clock
        self.bus = store.bus()  # frames to the sockets watching a session, on any instance
        self.answering = {}   # (session id, message id) -> task
        self._turns = {}      # address -> [lock, its consultant replies started and not finished]
        # Questions taken over from an instance that died: a few at a time, not all of its questions at once.
        self._takeovers = asyncio.Semaphore(TAKEOVERS_AT_ONCE)
        self._reply_ids = itertools.count(1)
        self._reply_prefix = secrets.token_hex(4)  # reply ids stay unique across restarts

    # ---- sessions ------------------------------------------------------------------------------
    async def open_session(self, session_id, last_seq, origin, address=None):
        """Resume the session if it is known for this origin, else start a new one for ``address``.

        Returns ``(session_id, resumed, expired)``; the caller watches the session, then reads what to
        replay (``store.entries_after``), so that nothing stored in between is missed. Raises
        ``NewConversationRefused`` when a new one may not start now (the store is full, or the address
        started too many).
        """
        if session_id is not None and await self.store.find_session(session_id, origin):
            if last_seq <= await self.store.last_seq(session_id):
                return session_id, True, False
        self._may_start(address)
        new_id = await self.store.create_session(origin)
        return new_id, False, session_id is not None

    def _may_start(self, address):
        if self.store_budget is not None and not self.store_budget.accepting:
            raise NewConversationRefused(close.BUSY, STORE_BUSY)
        if self.budgets is not None and not self.budgets.start_conversation(address, self.clock()):
            wait = math.ceil(self.budgets.conversation_wait(address, self.clock()))
            raise NewConversationRefused(close.LIMITED, f"too many new conversations from your address; "
                                                        f"try again in {wait} s")

    async def watch(self, session_id, send):
        """``send`` receives the session's frames from now on; returns the replies streaming now."""
        return await self.bus.watch(session_id, send)

    def unwatch(self, session_id, send):
        self.bus.unwatch(session_id, send)

    async def publish(self, session_id, frame):
        await self.bus.publish(session_id, frame)

    async def resync(self, session_ids):
        """The bus may have missed frames for these sessions (its connection to a shared store broke):
        send this process's watchers every stored entry again. Widgets drop what they have (by sequence
        number and id), so only what was missed shows."""
        for session_id in session_ids:
            try:
                entries = await self.store.entries_after(session_id, 0)
            except StoreUnavailable:
                continue  # the store watch closes new connections; these resume when it answers
            for entry in entries:
                await self.bus.deliver(session_id, entry.frame(live=False))

    # ---- messages ------------------------------------------------------------------------------
    async def visitor_message(self, session_id, message_id, text, lang=None, address=None):
        """Store (once) and answer (once), in the widget's language ``lang``. Returns the stored entry.
        Raises the store's ``ConversationFull`` when the conversation holds its byte budget."""
        entry, is_new = await self.store.add_visitor_message(session_id, message_id, text)
        # A shared store may have stored it on an earlier try whose answer never came back (the
        # connection broke after Redis ran the script): the claim tells whether it still needs an answer.
        if is_new or self.store.shared:
            self.start_answer(session_id, message_id, lang, address)
        return entry

    async def answer_unanswered(self, session_id, lang=None, address=None):
        """After a crash or restart, answer what was stored but never answered."""
        for message_id in await self.store.unanswered(session_id):
            self.start_answer(session_id, message_id, lang, address)

    def start_answer(self, session_id, message_id, lang=None, address=None):
        """Answer in a task of its own; ``address`` None (a question taken over from another instance)
        is answered outside the per-address turns and budgets, which belong to the visitors asking now."""
        key = (session_id, message_id)
        if key in self.answering:
            return
        task = asyncio.create_task(self._answer_until_stored(session_id, message_id, lang, address))
        self.answering[key] = task
        task.add_done_callback(lambda _: self.answering.pop(key, None))

    async def _answer_until_stored(self, session_id, message_id, lang, address):
        """A store that does not answer (Redis restarting) postpones the answer: no claim may have been
        written, so no other instance would take the question over; tried again with backoff."""
        delay, waited = 1.0, 0.0
        while True:
            try:
                await self._answer(session_id, message_id, lang, address)
                return
            except StoreUnavailable as error:
                log.warning("answer postponed, the store is unavailable: %s", error)
            except KeyError:
                return  # the conversation expired meanwhile
            if waited > GIVE_UP_AFTER:
                log.warning("question left unanswered after %.0f s without a store session=%s", waited, session_id)
                return
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 30.0)

    async def _answer(self, session_id, message_id, lang, address):
        # A question is answered once however many instances share the store: the claim says who.
        claim = await self.store.claim(session_id, message_id, f"r{self._reply_prefix}-{next(self._reply_ids)}",
                                       lang, self.reply_lease)
        if claim is None:
            return  # answered, or another instance is answering it
        reply_id, lang = claim
        consult, turn = self._take_turn(address)  # after the claim: a refused claim costs no budget
        try:
            if consult:
                await self._consult(session_id, message_id, reply_id, lang, turn)
            else:
                await self._store_reply(session_id, reply_id, message_id, languages.choose(TOO_FAST, lang))
        finally:
            self._leave_turn(address, turn)

    def _take_turn(self, address):
        """``(consult, turn)``: whether the consultant answers (the address's reply budget and queue allow
        it), and the turn to wait for (a lock per address, one reply at a time)."""
        if address is None:
            return True, [self._takeovers, 1]
        turn = self._turns.get(address)
        if turn is not None and turn[1] > self.waiting_replies:
            log.info("consultant busy with %d replies for address=%s: answering without it", turn[1], address)
            return False, None
        if self.budgets is not None and not self.budgets.reply(address, self.clock()):
            log.info("reply budget spent address=%s: answering without the consultant", address)
            return False, None
        turn = self._turns.setdefault(address, [asyncio.Lock(), 0])
        turn[1] += 1
        return True, turn

    def _leave_turn(self, address, turn):
        if turn is None or address is None:
            return
        turn[1] -= 1
        if not turn[1]:
            del self._turns[address]

    async def _consult(self, session_id, message_id, reply_id, lang, turn):
        partial = frames.reply_start(reply_id, message_id)
        renewing = asyncio.create_task(self._renew(session_id, message_id, asyncio.current_task()))
        try:
            await self.bus.stream_started(session_id, dict(partial))
            text = await self._written(session_id, reply_id, message_id, partial, lang, turn)
        except BaseException:
            renewing.cancel()
            self.bus.stream_abandoned(session_id, reply_id)
            raise
        # The text exists: from here the claim no longer matters, and a cancel from the renewer must not
        # land while the store writes (stored, then never published). One already on its way stops here.
        renewing.cancel()
        if asyncio.current_task().cancelling():
            self.bus.stream_abandoned(session_id, reply_id)
            raise asyncio.CancelledError
        await self._store_written(session_id, reply_id, message_id, text)

    async def _store_written(self, session_id, reply_id, message_id, text):
        """Store and publish a written reply, again while the store does not answer: asking the consultant
        again would restart the visitor's reply, and a try whose answer was lost may have stored it (the
        store then returns it, and it is published)."""
        delay, waited = 1.0, 0.0
        while True:
            try:
                await self._store_reply(session_id, reply_id, message_id, text)
                return
            except StoreUnavailable as error:
                if waited > GIVE_UP_AFTER:
                    raise
                log.warning("reply written, storing it again shortly: %s", error)
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 30.0)

    async def _written(self, session_id, reply_id, message_id, partial, lang, turn):
        """The consultant's reply, in this address's turn; what stands in for it when the consultant fails."""
        try:
            # The history is read in the turn, with the answers to the questions before it.
            async with turn[0]:
                history = await self._history(session_id, message_id)
                text = await asyncio.wait_for(self._stream(session_id, reply_id, history, partial, lang),
                                              self.reply_timeout)
        except (asyncio.CancelledError, StoreUnavailable):
            raise
        except Exception as error:  # a consultant failure must never reach the socket
            log.warning("consultant failed consultant=%s error=%s: %s", self.consultant.name, type(error).__name__, error)
            log.debug("consultant failure detail", exc_info=True)
            # Keep what the visitor already saw stream in; the stored reply replaces the stream.
            text = partial["text"] + CUT_OFF if partial["text"].strip() else SORRY
        return text if text.strip() else SORRY

    async def _store_reply(self, session_id, reply_id, message_id, text):
        entry, is_new = await self.store.add_reply(session_id, reply_id, message_id, text)
        await self.bus.stream_ended(session_id, reply_id)
        if not is_new:
            log.info("question already answered, by another instance or an earlier try session=%s", session_id)
        # Published either way: a reply stored on a try whose answer was lost was never published, and a
        # widget that has it already drops the frame.
        await self.publish(session_id, entry.frame(live=True))

    async def _renew(self, session_id, message_id, answering):
        """Keep the claim while the reply is produced (a third of the lease between renewals). A claim
        lost, or not renewed for a whole lease (the store did not answer), stops the answer: another
        instance may be answering, and the visitor must not see two replies written into one."""
        loop = asyncio.get_running_loop()
        every = self.reply_lease / 3
        renewed = loop.time()
        while True:
            await asyncio.sleep(every)
            asked = loop.time()
            try:
                held = await self.store.renew(session_id, message_id, self.reply_lease)
            except StoreUnavailable:
                # Stop before the lease can have lapsed in the store: the next renewal would come after
                # another third, and another instance may take the question over at the lapse.
                held = loop.time() + every < renewed + self.reply_lease
            else:
                renewed = asked  # the store's deadline counts from no later than when it was asked
            if not held:
                log.warning("claim on a question lost while answering it: stopping session=%s", session_id)
                answering.cancel()
                return

    async def take_over_lapsed(self):
        """Answer the questions whose instance died while answering them (a shared store); returns how
        many were started here."""
        started = 0
        for session_id, message_id in await self.store.lapsed_claims():
            if (session_id, message_id) not in self.answering:
                self.start_answer(session_id, message_id)
                started += 1
        return started

    async def _history(self, session_id, message_id):
        """The questions up to ``message_id``, each followed by its answer (answers are stored in the
        order they finish, which is not always the order of the questions), not later questions."""
        entries = await self.store.entries_after(session_id, 0)
        answers = {entry.in_reply_to: entry.text for entry in entries if entry.author == "consultant"}
        history = []
        for entry in entries:
            if entry.author != "visitor":
                continue
            history.append({"author": "visitor", "text": entry.text})
            if entry.id == message_id:
                break
            if entry.id in answers:
                history.append({"author": "consultant", "text": answers[entry.id]})
        return history

    async def _stream(self, session_id, reply_id, history, partial, lang):
        chunks = []
        async for chunk in self.consultant.reply(history, lang):
            if not chunk:
                continue
            chunks.append(chunk)
            partial["text"] += chunk
            await self.bus.stream_chunk(session_id, frames.reply_chunk(reply_id, chunk))
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
