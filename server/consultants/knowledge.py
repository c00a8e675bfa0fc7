"""The ``knowledge`` consultant: answers visitors from Markdown knowledge files, offline, in their language.

Knowledge file format
=====================

Plain Markdown, UTF-8::

    # Lantern & Loom                 <- optional: the business name, used when greeting
    Language: en                     <- optional: the file's language (default: en, or the file name's)
    Synonyms: metre, meter, m        <- optional, repeatable: words visitors use for the file's word

    ## When are you open?            <- one "## " section per topic or question
    Keywords: opening hours, closing time, Sunday, what time do you close
    Our shop is open Monday to Saturday, 9:00 to 18:00.

    ## Can I return something?
    Asked: i want to send back the lamp i bought last week
    You can return any item within 30 days for a full refund.

    Unanswered: is there parking near the shop?   <- anywhere: a question the file does not answer

* Each ``## `` heading starts a section: the heading is the topic or question, the lines below it (up
  to the next ``## ``) are the answer, sent to the visitor as written.
* ``Keywords: a, b, c`` lines in a section add the words and phrases that visitors use for this
  topic; ``Asked: …`` lines add questions as visitors really asked them (one per line, typos and
  all: paste them from your inbox). Both count for finding the section and are never shown.
* ``Unanswered: …`` lines, anywhere in the file, are questions visitors asked that it does not answer
  (from the inbox too). With the semantic ranker, a question nearer to one of them than to the best
  section's own questions gets "I don't know" with the contacts, rather than a near miss.
* Before the first section, ``Synonyms: word, other, other`` says that visitors' ``other`` words mean
  the file's ``word`` everywhere in the file (spelling variants, regional words, phrases such as
  ``return, send back``); ``Language: de`` names the file's language (for stemming and stop words).
* Blank lines separate paragraphs; lines starting with ``- `` or ``* `` become bullet points;
  ``**bold**``, ``*italics*``, ```code``` and ``[links](https://…)`` are shown as plain text.
* HTML comments (``<!-- … -->``) and any other text before the first ``## `` are ignored.

One file per language
=====================

``knowledge.md`` is the site's main file. Files beside it named ``knowledge.<lang>.md`` (for example
``knowledge.de.md``) answer visitors whose widget speaks that language (the ``lang`` of ``hello``;
``de-AT`` falls back to ``de``); every other visitor gets the main file. A site with one language keeps
one file. Files are found at start; each file is re-read when its modification time or size changes
(checked on a reply, at most every ``reload_interval`` seconds; the semantic ranker embeds the new
version's examples in a background thread, and the words answer meanwhile), and if a reload
fails the previous version is kept.

Retrieval is :mod:`.semantic` (the default: a multilingual sentence-embedding model compares the
question with each section's heading and ``Asked:`` lines) together with :mod:`.retrieval` (stemming,
synonyms, compounds, BM25 with bm25s); below their thresholds the consultant says it doesn't know and
offers the configured contacts. Ranking by words alone (``--ranker words``) uses :mod:`.retrieval` only.
Greetings and thanks are recognised and stripped first (:mod:`.small_talk`), so "hi, when are you
open?" greets and then answers the hours; a message asking two things gets both answers.
"""

import asyncio
import glob
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy

from .. import languages
from . import small_talk
from .base import Consultant
from . import semantic
from .retrieval import KNOWN_LANGUAGES, Match, Retriever

log = logging.getLogger("chat_widget.knowledge")

#: At most this many sections answer one message (one per question in it).
MAX_ANSWERS = 2
#: At most this many parts of a message of each kind (its questions, its sides of "and", its sentences
#: that ask) are searched on their own, and at most MAX_MODEL_CALLS of all of them by meaning: each
#: costs the model a call (up to 30 ms), so a message of a thousand question marks must not.
MAX_PARTS = 6
MAX_MODEL_CALLS = 8


@dataclass
class Section:
    """One topic of the knowledge file: ``title`` (the heading), ``keywords`` and ``body`` (Markdown)."""

    title: str
    body: str
    keywords: list = field(default_factory=list)
    asked: list = field(default_factory=list)

    @cached_property
    def answer(self):
        """The body as plain text for the chat: markup removed, paragraphs kept."""
        return markdown_to_text(self.body)

    @property
    def examples(self):
        """What the semantic ranker compares a question with: the heading and the ``Asked:`` questions;
        a section without any uses its keyword phrases instead (with them, they only answered
        off-topic questions more; without, they answer more on-topic ones: docs/consultant.md)."""
        return [self.title, *(self.asked or self.keywords)]

    @property
    def index_text(self):
        return "\n".join([self.title, ", ".join(self.keywords), *self.asked, self.body])


@dataclass
class KnowledgeText:
    """A parsed knowledge file: business ``name`` ("" if none), declared ``language`` (None if not
    declared), ``synonyms`` (lists of words, the file's word first), ``sections``, and ``unanswered``:
    questions visitors asked that the file does not answer (``Unanswered:`` lines, anywhere)."""

    name: str
    language: str
    synonyms: list
    sections: list
    unanswered: list = field(default_factory=list)


_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_MARKED = re.compile(r"^\s*(keywords|asked)\s*:\s*(.*)$", re.IGNORECASE)
_UNANSWERED = re.compile(r"^\s*unanswered\s*:\s*(.*\S)\s*$", re.IGNORECASE)
_DECLARATION = re.compile(r"^\s*(language|synonyms)\s*:\s*(.*)$", re.IGNORECASE)


def parse_knowledge(text):
    """Split knowledge-file text into a :class:`KnowledgeText`."""
    text = _COMMENT.sub("", text.replace("\r\n", "\n"))
    found = KnowledgeText("", None, [], [])
    parts = []  # (title, keywords, asked, body lines)
    for line in text.split("\n"):
        unanswered = _UNANSWERED.match(line)
        if unanswered:
            found.unanswered.append(unanswered.group(1))
        elif line.startswith("## "):
            parts.append((line[3:].strip().rstrip("#").strip(), [], [], []))
        elif not parts:
            declared = _DECLARATION.match(line)
            if line.startswith("# ") and not found.name:
                found.name = line[2:].strip().rstrip("#").strip()
            elif declared and declared.group(1).lower() == "language":
                found.language = declared.group(2).strip().lower() or None
            elif declared:
                group = _comma_list(declared.group(2))
                if len(group) > 1:
                    found.synonyms.append(group)
        else:
            marked = _MARKED.match(line)
            if marked and marked.group(1).lower() == "keywords":
                parts[-1][1].extend(_comma_list(marked.group(2)))
            elif marked:
                parts[-1][2].append(marked.group(2).strip())
            else:
                parts[-1][3].append(line)
    sections = [Section(title, "\n".join(lines).strip(), keywords, asked) for title, keywords, asked, lines in parts]
    found.sections = [section for section in sections if section.title and section.body]
    return found


def _comma_list(text):
    return [word.strip() for word in text.split(",") if word.strip()]


_BOLD = re.compile(r"(\*\*|__)(.+?)\1")
_ITALIC = re.compile(r"(?<![\w*])([*_])(?!\s)(.+?)(?<!\s)\1(?![\w*])")
_CODE = re.compile(r"`([^`]*)`")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BULLET = re.compile(r"^\s*[-*+]\s+")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+")


def markdown_to_text(markdown):
    """Render the little Markdown a knowledge answer uses as plain text (the widget shows text only).

    Paragraphs stay separated by a blank line, wrapped lines are joined, list items keep their own line
    ("- item" becomes "• item"), and emphasis, code and link markup is dropped (a link keeps its URL).
    """
    paragraphs = []
    for block in re.split(r"\n\s*\n", markdown.strip()):
        entries = []
        for raw in block.split("\n"):
            line = raw.strip()
            if not line:
                continue
            line = _LINK.sub(_link_text, _CODE.sub(r"\1", line))
            if _BULLET.match(line):
                entries.append("• " + _inline(_BULLET.sub("", line)))
            elif _NUMBERED.match(line) or not entries:
                entries.append(_inline(line.lstrip("#").strip()))
            else:
                entries[-1] += " " + _inline(line)
        if entries:
            paragraphs.append("\n".join(entries))
    return "\n\n".join(paragraphs)


def _link_text(found):
    label, url = found.group(1), found.group(2)
    return label if label == url else f"{label} ({url})"


def _inline(text):
    return _ITALIC.sub(r"\2", _BOLD.sub(r"\2", text))


class KnowledgeBase:
    """One knowledge file, its sections and their index; reloads itself when the file changes.

    ``language``: what the file's name says (``knowledge.de.md``), None for the main file; a
    ``Language:`` line in the file must agree with it. Raises ``ValueError`` naming the path if the file
    is missing, unreadable, has no sections or declares another language than its name.
    """

    def __init__(self, path, language=None, reload_interval=2.0, clock=time.monotonic, embedder=None):
        self.path = Path(path)
        self._named_language = language
        self._embedder = embedder
        self._reloading = threading.Lock()
        self.reload_interval = reload_interval
        self._clock = clock
        self._stamp = None
        self._last_check = clock()
        self._load()

    # -- loading -------------------------------------------------------------------------------

    def _file_stamp(self):
        info = os.stat(self.path)
        return (info.st_mtime_ns, info.st_size)

    def _load(self):
        try:
            stamp = self._file_stamp()
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ValueError(f"knowledge file not found: {self.path}") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"cannot read knowledge file {self.path}: {error}") from None
        parsed = parse_knowledge(text)
        if not parsed.sections:
            raise ValueError(f"knowledge file {self.path} has no sections (start each topic with a '## ' heading)")
        language = parsed.language or self._named_language or "en"
        if not languages.is_language_tag(language):
            raise ValueError(f"knowledge file {self.path}: 'Language: {parsed.language}' is not a language tag such as en or de")
        if self._named_language and language != self._named_language:
            raise ValueError(f"knowledge file {self.path} says 'Language: {language}' but its name says {self._named_language}")
        try:
            retriever = Retriever([section.index_text for section in parsed.sections], language, parsed.synonyms)
        except ValueError as error:
            raise ValueError(f"knowledge file {self.path}: {error}") from None
        index = None if self._embedder is None else semantic.SemanticIndex(
            self._embedder, [section.examples for section in parsed.sections], self.path.name, parsed.unanswered)
        # One assignment: an answer in another thread uses the old version or the new, never a mix.
        self.current = Version(parsed.name, language, small_talk.for_language(language), parsed.sections,
                               retriever, index)
        self._stamp = stamp

    def reload_if_changed(self, force=False):
        """Re-read the file if it changed since it was loaded; checks at most every ``reload_interval`` s.

        Returns True when new knowledge was loaded. A file that became unreadable or empty keeps the
        previous knowledge (and logs a warning).
        """
        now = self._clock()
        if not force and now - self._last_check < self.reload_interval:
            return False
        with self._reloading:  # answers run in worker threads: one of them reloads
            return self._reload(now)

    def _reload(self, now):
        self._last_check = now
        try:
            if self._file_stamp() == self._stamp:
                return False
            self._load()
        except (OSError, ValueError) as error:
            log.warning("knowledge file not reloaded, keeping the previous version: %s", error)
            return False
        log.info("knowledge file reloaded path=%s sections=%d", self.path, len(self.sections))
        return True

    # -- the current version ------------------------------------------------------------------

    name = property(lambda self: self.current.name)
    language = property(lambda self: self.current.language)
    talk = property(lambda self: self.current.talk)  # the words around its answers
    sections = property(lambda self: self.current.sections)
    retriever = property(lambda self: self.current.retriever)
    semantic = property(lambda self: self.current.semantic)

    def search(self, question, limit=3):
        return self.current.search(question, limit)

    def best(self, question):
        return self.current.best(question)

    def answers(self, question):
        return self.current.answers(question)

    def wait_ready(self, timeout=None):
        """Waits until the semantic ranker has embedded this file's examples (until then the words answer
        alone); True when it ranks by meaning. For tests and the evaluation: the server never waits."""
        return self.semantic is not None and self.semantic.wait(timeout)

    def for_language(self, lang):
        """One file answers every language (so it can stand where a :class:`Knowledge` is expected)."""
        self.reload_if_changed()
        return self


@dataclass(frozen=True)
class Version:
    """One version of a knowledge file, as loaded: its ``name``, ``language``, ``talk`` (the words
    around its answers), ``sections``, word ranker ``retriever`` and ``semantic`` index (None: words
    alone). An answer is computed from one version from start to end."""

    name: str
    language: str
    talk: object
    sections: list
    retriever: Retriever
    semantic: object

    def search(self, question, limit=3):
        """The ``limit`` best-matching sections for ``question`` by words, best first, as
        :class:`~.retrieval.Match` es with their ``section``. Sections sharing no word with the
        question are never returned."""
        matches = self.retriever.search(question, limit)
        for match in matches:
            match.section = self.sections[match.index]
        return matches

    def best(self, question, budget=None):
        """The match that answers ``question`` confidently, or None. With the semantic ranker, the
        sections are ranked by meaning and words together (:func:`.semantic.fuse`), and a question whose
        nearest ``Unanswered:`` question is as near as the best section's nearest example is not
        answered; by words alone while the model is not ready, when it fails, or once ``budget`` (the
        model calls left for this message) is spent."""
        similarity = None
        if self.semantic is not None and (budget is None or budget.take()):
            try:
                similarity = self.semantic.similarity(question)
            except Exception:  # noqa: BLE001 - the visitor still gets the words' answer
                log.exception("semantic ranker failed on a question; answering it by words")
        if similarity is None:
            matches = self.search(question, limit=1)
            return matches[0] if matches and matches[0].confident else None
        similarity, nearest, unanswered = similarity
        matches = self.retriever.search(question, limit=len(self.sections))
        fused = semantic.fuse(similarity, matches, self.retriever.min_score)
        index = int(numpy.argmax(fused))
        # As near to a question the file does not answer as to any of the section's own: "I don't know".
        if fused[index] < semantic.THRESHOLD or unanswered >= nearest[index]:
            return None
        coverage = next((match.coverage for match in matches if match.index == index), 0.0)
        match = Match(index, float(fused[index]), coverage, True)
        match.section = self.sections[index]
        return match

    def answers(self, question):
        """The sections that answer ``question``, one per question asked in it (at most
        :data:`MAX_ANSWERS`); empty when none answers confidently. In this order:

        1. several questions, each up to its question mark ("what are your hours? do you ship to the
           UK?"): an answer to each;
        2. the whole message;
        3. two topics joined by "and" ("hours and shipping to the UK"): an answer to each;
        4. the best of the message's sentences that ask something ("Good morning, we would like to
           visit next week. At what hour do you open?"), so that the context around a question does
           not drown it; a sentence that asks nothing is context, not a question;
        5. one side of an "and".

        At most :data:`MAX_PARTS` parts of each kind are searched, and at most :data:`MAX_MODEL_CALLS`
        of all of them by meaning (the rest by words).
        """
        budget = _Budget(MAX_MODEL_CALLS)
        found = self._each(_questions(question), budget)
        if len(found) >= 2:
            return found[:MAX_ANSWERS]
        whole = self.best(question, budget)
        if whole:
            return [whole.section]
        found = self._each(_AND.split(question), budget)
        if len(found) >= 2:
            return found[:MAX_ANSWERS]
        asking = [sentence for sentence in _SENTENCES.split(question) if self.talk.asks(sentence)]
        matches = [match for match in (self.best(sentence, budget) for sentence in asking[:MAX_PARTS]) if match]
        if matches:
            return [max(matches, key=lambda match: match.score).section]
        return found[:1]

    def _each(self, parts, budget):
        """The distinct sections that confidently answer each of ``parts`` (when there are two or more)."""
        parts = [part for part in parts if self.retriever.analyzer.content_words(part)][:MAX_PARTS]
        found = []
        for part in parts if len(parts) >= 2 else ():
            match = self.best(part, budget)
            if match and match.section not in found:
                found.append(match.section)
        return found


class _Budget:
    """How many more calls the model may make for one message."""

    def __init__(self, calls):
        self.calls = calls

    def take(self):
        self.calls -= 1
        return self.calls >= 0


def _questions(message):
    """Each question of a message, up to its question mark. (Split, not a regular expression: a
    pattern such as ``[^?]+[?]`` rescans the rest of the message from every position, 17 ms for 16 KB
    without a question mark.)"""
    parts = message.split("?")
    return [part + "?" for part in parts[:-1] if part]


_SENTENCES = re.compile(r"[.!?;\n]+")
_AND = re.compile(r"\s(?:and|also|plus|und|sowie|außerdem|ausserdem)\s", re.IGNORECASE)


class Knowledge:
    """The site's knowledge files: the main ``path`` and the ``<stem>.<lang>.md`` files beside it.

    ``<lang>`` is a language this server knows (:data:`~.retrieval.KNOWN_LANGUAGES`); another file
    such as ``knowledge.old.md`` is left alone, with a log line. A regional file
    (``knowledge.de-at.md``) also answers its base language when there is no file for that. The main
    file may be named by its language too (``--knowledge-path knowledge.de.md``). Raises ``ValueError``
    (naming the file) when one cannot be used, or two are of one language.
    """

    def __init__(self, path, reload_interval=2.0, clock=time.monotonic, embedder=None):
        path = Path(path)
        stem, named = _name_and_language(path)
        options = {"reload_interval": reload_interval, "clock": clock, "embedder": embedder}
        self.main = KnowledgeBase(path, named, **options)
        self.files = {self.main.language: self.main}
        for other in sorted(path.parent.glob(glob.escape(stem) + ".*" + glob.escape(path.suffix))):
            other_stem, language = _name_and_language(other)
            if other == path or other_stem != stem:
                continue
            if language is None:
                log.warning("knowledge file %s left alone: its name does not end in a language this server "
                            "knows, such as knowledge.de.md", other)
                continue
            if language in self.files:
                raise ValueError(f"knowledge files {self.files[language].path} and {other} are both in language {language}")
            self.files[language] = KnowledgeBase(other, language, **options)
        for language, knowledge in list(self.files.items()):
            self.files.setdefault(languages.base_language(language), knowledge)
        for knowledge in set(self.files.values()):
            log.info("knowledge file path=%s language=%s stemmer=%s sections=%d", knowledge.path, knowledge.language,
                     knowledge.retriever.analyzer.stemmer_name, len(knowledge.sections))

    def wait_ready(self, timeout=None):
        """:meth:`KnowledgeBase.wait_ready` for every file; True when all rank by meaning."""
        return all([knowledge.wait_ready(timeout) for knowledge in set(self.files.values())])

    def for_language(self, lang):
        """The file for the widget's language ``lang`` (``de-AT``: ``de``), else the main file; reloaded
        first if it changed."""
        knowledge = languages.choose(self.files, lang, default=self.main.language)
        knowledge.reload_if_changed()
        return knowledge


def _name_and_language(path):
    """``knowledge.de.md`` → ``("knowledge", "de")``; ``knowledge.md`` or ``knowledge.old.md`` →
    ``(its stem, None)``."""
    stem, _, tag = path.stem.rpartition(".")
    tag = tag.lower()
    if stem and languages.is_language_tag(tag) and languages.base_language(tag) in KNOWN_LANGUAGES:
        return stem, tag
    return path.stem, None


class KnowledgeConsultant(Consultant):
    """Answers from the knowledge files in the visitor's language; says so (and offers contacts) when unsure.

    ``contact`` is ``{"email": ..., "phone": ..., "url": ...}``; empty or missing entries are left out.
    ``embedder``: a :class:`.semantic.Embedder` to rank by meaning and words (what the server does by
    default, ``--ranker semantic``), or None to rank by words alone.
    """

    name = "knowledge"

    def __init__(self, path, contact=None, reload_interval=2.0, clock=time.monotonic, embedder=None):
        self.knowledge = Knowledge(path, reload_interval=reload_interval, clock=clock, embedder=embedder)
        self.contact = {key: value for key, value in (contact or {}).items() if value}

    def answer(self, question, lang=None):
        """The full reply text to ``question`` (the streaming :meth:`reply` sends it in sentences)."""
        knowledge = self.knowledge.for_language(lang).current  # one version for the whole answer
        talk = knowledge.talk
        greeting = talk.greeting.match(question)
        if greeting:
            question = question[greeting.end():]
        question, thanked = talk.thanks.subn(" ", question)
        question, farewell = talk.farewell.subn(" ", question)
        if not knowledge.retriever.analyzer.content_words(question):
            if farewell:
                return (talk.words["welcome_back"] if thanked else "") + talk.words["goodbye"]
            if thanked:
                return talk.words["thanks"]
            if greeting:
                return talk.welcome(knowledge.name)
            return talk.words["vague"]
        sections = knowledge.answers(question)
        text = "\n\n".join(section.answer for section in sections) if sections else talk.unknown(self.contact)
        if greeting:
            text = talk.words["hello"] + text
        elif thanked and sections:
            text = talk.words["welcome_back"] + text
        return text

    async def reply(self, history, lang=None):
        question = history[-1]["text"] if history else ""
        # In the consultant's own threads: the semantic ranker spends milliseconds of C per question (the
        # GIL released), and the default pool also serves the runtime's files.
        text = await asyncio.get_running_loop().run_in_executor(_ANSWERING, self.answer, question, lang)
        for piece in split_sentences(text):
            yield piece
            await asyncio.sleep(0)


# Two: the model answers one question at a time (semantic._ENGINE); the other thread ranks by words.
_ANSWERING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="knowledge")

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|\n\n+")


def split_sentences(text):
    """Split an answer into chunks for streaming, each keeping its trailing separator."""
    pieces = []
    start = 0
    for found in _SENTENCE_END.finditer(text):
        pieces.append(text[start:found.end()])
        start = found.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces
