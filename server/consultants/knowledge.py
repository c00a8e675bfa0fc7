"""The ``knowledge`` consultant: answers visitors from a Markdown knowledge file, offline.

Knowledge file format
=====================

Plain Markdown, UTF-8::

    # Lantern & Loom                 <- optional: the business name, used when greeting

    ## When are you open?            <- one "## " section per topic or question
    Keywords: opening hours, closing time, Sunday
    Our shop is open Monday to Saturday, 9:00 to 18:00.

    ## Can I return something?
    You can return any item within 30 days for a full refund.

* Each ``## `` heading starts a section: the heading is the topic or question, the lines below it (up
  to the next ``## ``) are the answer, sent to the visitor as written.
* An optional ``Keywords: a, b, c`` line in a section adds synonyms and phrases visitors might use.
  They count for retrieval only and are never shown.
* Blank lines separate paragraphs; lines starting with ``- `` or ``* `` become bullet points;
  ``**bold**``, ``*italics*``, ```code``` and ``[links](https://…)`` are shown as plain text.
* HTML comments (``<!-- … -->``) and any text before the first ``## `` are ignored.

Retrieval
=========

Each section is indexed as its heading + keywords + body, tokenised by :func:`tokenize` (lowercase,
letters and digits, a small stopword list, a light suffix stemmer), and ranked with BM25
(``rank_bm25.BM25Okapi``, with Lucene's always-positive IDF so small files work). The best section is
used only when:

* it shares at least one content word with the question;
* at least :data:`MIN_COVERAGE` (0.5) of the question's content words, weighted by their IDF, occur in
  it. Words the knowledge file never mentions weigh the most, so "what's the capital of Belgium" (only
  "belgium" is known) is not answered with the address, while filler words the file lacks ("how do I
  get a *wine* stain out") don't sink a question whose key words match; and
* its BM25 score is at least :data:`MIN_SCORE` (0.4) times the IDF of a word found in one section only
  (a normalised floor: one distinctive word is enough, one word found in most sections is not).

Tuned on the shipped knowledge.md with ~110 visitor questions and ~20 off-topic ones: right answers
covered ≥ 0.54 of the question, off-topic ones ≤ 0.45.

Otherwise the consultant says it doesn't know and offers the configured contacts. Greetings and thanks
are recognised and stripped first, so "hi, when are you open?" greets and then answers the hours.

The file is re-read when its modification time or size changes (checked on a reply, at most every
``reload_interval`` seconds; no background threads). If a reload fails, the previous knowledge is kept.
"""

import asyncio
import logging
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from rank_bm25 import BM25Okapi

from .base import Consultant

log = logging.getLogger("chat_widget.knowledge")

#: Smallest BM25 score of the best section, as a share of the IDF of a word found in one section only
#: (so one distinctive word matching once is enough, while one word found in most sections is not).
MIN_SCORE = 0.4
#: Smallest IDF-weighted share of the question's content words that must occur in the best section.
MIN_COVERAGE = 0.5

STOPWORDS = frozenset("""
a about above after again all also am an and any anything are aren arent as at be been being before
but by can cant could couldn couldnt d did didn didnt do does doesn doesnt doing don dont down during
each else ever for from further get gets getting got had has have having he her here hers him his how
i id if ill im in into is isn isnt it its ive just know let lets like ll m may me might more most
must my need no nor not now of off on once only or other our ours out over own please pls re s same
say shall she should so some such t tell than that thats the their them then there theres these they
this those through to too u under until up us ve very want was wasn wasnt way we well were what whats
when wheres which while whos whom why will with won wont would wouldn wouldnt y yes you youd
youll your youre yours ok okay hey hi hello thank thanks thx cheers great good nice lot really
kind sort type go goes going real actually thing things something anything possible able one ones
""".split())

_WORD = re.compile(r"[^\W_]+")
_APOSTROPHES = re.compile(r"[\u2019'`]")
_US = re.compile(r"\bU\.?S\.?(?:A\.?)?(?![\w.])")  # "US"/"U.S." is a country, not the stopword "us"
_DOUBLED = re.compile(r"([b-df-hj-np-tv-z])\1$")


def stem(word):
    """A light suffix stemmer: plural -s/-es/-ies, -ing and -ed, and a final -e on longer words.

    It only has to map a word and its common variants onto the same token ("lamps" → "lamp",
    "shipping"/"shipped" → "ship", "closing"/"closes"/"closed" → "clos"); it doesn't need real stems.
    """
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("sses"):
        word = word[:-2]
    elif word.endswith(("xes", "ches", "shes", "zzes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    elif word.endswith("ing") and len(word) >= 6:
        word = _undouble(word[:-3])
    elif word.endswith("ed") and len(word) >= 5 and not word.endswith("eed"):
        word = _undouble(word[:-2])
    if len(word) >= 5 and word.endswith("e") and not word.endswith("ee"):
        word = word[:-1]
    return word


def _undouble(word):
    """"shipp" → "ship", "cancell" → "cancel"; keeps "ss", "zz" and short "ll" ("sell", "dress")."""
    if _DOUBLED.search(word) and (word[-1] not in "lsz" or (word.endswith("ell") and len(word) >= 6)):
        return word[:-1]
    return word


def tokenize(text):
    """Lowercase content-word tokens of ``text``: stopwords dropped, each word stemmed."""
    if not text.isupper():  # in ALL CAPS "US" is just "us"
        text = _US.sub("usa", text)
    text = _APOSTROPHES.sub("", text.lower())
    return [stem(word) for word in _WORD.findall(text) if word not in STOPWORDS]


@dataclass
class Section:
    """One topic of the knowledge file: ``title`` (the heading), ``keywords`` and ``body`` (Markdown)."""

    title: str
    body: str
    keywords: list = field(default_factory=list)

    @property
    def answer(self):
        """The body as plain text for the chat: markup removed, paragraphs kept."""
        return markdown_to_text(self.body)

    @property
    def index_text(self):
        return " ".join([self.title, " ".join(self.keywords), self.body])


@dataclass
class Match:
    """A retrieval result: the section, its BM25 ``score``, the share of the question it covers, and
    whether both pass the thresholds (``confident``)."""

    section: Section
    score: float
    coverage: float
    confident: bool


_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_KEYWORDS = re.compile(r"^\s*keywords\s*:\s*(.*)$", re.IGNORECASE)


def parse_knowledge(text):
    """Split knowledge-file text into ``(name, [Section, ...])``; ``name`` is the ``# `` heading or ""."""
    text = _COMMENT.sub("", text.replace("\r\n", "\n"))
    name = ""
    parts = []  # (title, keywords, body lines)
    for line in text.split("\n"):
        if line.startswith("## "):
            parts.append((line[3:].strip().rstrip("#").strip(), [], []))
        elif not parts:
            if line.startswith("# ") and not name:
                name = line[2:].strip().rstrip("#").strip()
        else:
            found = _KEYWORDS.match(line)
            if found:
                parts[-1][1].extend(word.strip() for word in found.group(1).split(",") if word.strip())
            else:
                parts[-1][2].append(line)
    sections = [Section(title, "\n".join(lines).strip(), keywords) for title, keywords, lines in parts]
    return name, [section for section in sections if section.title and section.body]


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


class _BM25(BM25Okapi):
    """``BM25Okapi`` with the always-positive IDF ``log(1 + (N - n + 0.5) / (n + 0.5))`` (as in Lucene).

    rank_bm25's own IDF is 0 or floored for words found in half of the sections or more, which makes
    small knowledge files (a handful of sections) unanswerable.
    """

    def _calc_idf(self, nd):
        n = self.corpus_size
        self.idf = {word: math.log(1 + (n - freq + 0.5) / (freq + 0.5)) for word, freq in nd.items()}
        self.average_idf = sum(self.idf.values()) / len(self.idf) if self.idf else 0.0

    def unseen_idf(self):
        """IDF of a word that no section contains (the highest possible)."""
        return math.log(1 + (self.corpus_size + 0.5) / 0.5)

    def unique_idf(self):
        """IDF of a word that exactly one section contains."""
        return math.log(1 + (self.corpus_size - 0.5) / 1.5)


class KnowledgeBase:
    """The sections of one knowledge file and a BM25 index over them; reloads itself when the file changes.

    Raises ``ValueError`` naming the path if the file is missing, unreadable or has no sections.
    """

    def __init__(self, path, reload_interval=2.0, clock=time.monotonic):
        self.path = Path(path)
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
        name, sections = parse_knowledge(text)
        if not sections:
            raise ValueError(f"knowledge file {self.path} has no sections (start each topic with a '## ' heading)")
        tokens = [tokenize(section.index_text) for section in sections]
        self.name = name
        self.sections = sections
        self._tokens = [set(doc) for doc in tokens]
        self._bm25 = _BM25(tokens)
        self._min_score = MIN_SCORE * self._bm25.unique_idf()
        self._stamp = stamp

    def reload_if_changed(self, force=False):
        """Re-read the file if it changed since it was loaded; checks at most every ``reload_interval`` s.

        Returns True when new knowledge was loaded. A file that became unreadable or empty keeps the
        previous knowledge (and logs a warning).
        """
        now = self._clock()
        if not force and now - self._last_check < self.reload_interval:
            return False
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

    # -- retrieval -----------------------------------------------------------------------------

    def _idf(self, token):
        """IDF as BM25 computes it; words absent from the file get the highest weight."""
        return self._bm25.idf.get(token) or self._bm25.unseen_idf()

    def search(self, question, limit=3):
        """The ``limit`` best-matching sections for ``question`` as :class:`Match` es, best first.

        Sections sharing no content word with the question are never returned.
        """
        query = tokenize(question)
        if not query:
            return []
        unique = list(dict.fromkeys(query))
        total = sum(self._idf(token) for token in unique)
        scores = self._bm25.get_scores(query)
        ranked = sorted(range(len(self.sections)), key=lambda i: scores[i], reverse=True)
        matches = []
        for index in ranked[:limit]:
            present = [token for token in unique if token in self._tokens[index]]
            if not present or scores[index] <= 0:
                continue
            coverage = sum(self._idf(token) for token in present) / total
            matches.append(Match(self.sections[index], float(scores[index]), coverage,
                                 float(scores[index]) >= self._min_score and coverage >= MIN_COVERAGE))
        return matches

    def best(self, question):
        """The section that answers ``question`` confidently, or None."""
        matches = self.search(question, limit=1)
        if matches and matches[0].confident:
            return matches[0]
        return None


_GREETING = re.compile(
    r"^\W*(?:hi|hello|hey|hiya|howdy|greetings|good\s+(?:morning|afternoon|evening|day))\b"
    r"(?:\s+there)?[\s,.!?;:-]*",
    re.IGNORECASE,
)
_THANKS = re.compile(
    r"\b(?:thank\s*(?:you|u)|thanks|thx|cheers|much\s+appreciated|appreciate\s+it)\b"
    r"(?:\s+(?:so|very)\s+much|\s+a\s+lot|\s+a\s+bunch)?[\s,.!?;:-]*",
    re.IGNORECASE,
)
_FAREWELL = re.compile(
    r"\b(?:good\s*bye|bye(?:\s*bye)?|see\s+you(?:\s+(?:later|soon))?|have\s+a\s+(?:nice|good|great|lovely)\s+(?:day|evening|weekend))\b"
    r"[\s,.!?;:-]*",
    re.IGNORECASE,
)
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


class KnowledgeConsultant(Consultant):
    """Answers from a knowledge file with BM25 retrieval; says so (and offers contacts) when unsure.

    ``contact`` is ``{"email": ..., "phone": ..., "url": ...}``; empty or missing entries are left out.
    """

    name = "knowledge"

    def __init__(self, path, contact=None, reload_interval=2.0, clock=time.monotonic):
        self.knowledge = KnowledgeBase(path, reload_interval=reload_interval, clock=clock)
        self.contact = {key: value for key, value in (contact or {}).items() if value}

    # -- wording -------------------------------------------------------------------------------

    def greeting(self):
        where = f" to {self.knowledge.name}" if self.knowledge.name else ""
        return f"Hello, and welcome{where}! How can I help you today?"

    @staticmethod
    def thanks():
        return "You're welcome! Is there anything else I can help you with?"

    def contact_sentence(self):
        ways = []
        if "email" in self.contact:
            ways.append(f"email {self.contact['email']}")
        if "phone" in self.contact:
            ways.append(f"call {self.contact['phone']}")
        if "url" in self.contact:
            ways.append(f"visit {self.contact['url']}")
        if not ways:
            return "Please get in touch with our team directly; they will be glad to help."
        if len(ways) > 1:
            listed = ", ".join(ways[:-1]) + " or " + ways[-1]
        else:
            listed = ways[0]
        return f"Our team will be glad to help: you can {listed}."

    def unknown(self):
        return "I'm sorry, I don't know the answer to that. " + self.contact_sentence()

    # -- answering -----------------------------------------------------------------------------

    def answer(self, question):
        """The full reply text to ``question`` (the streaming :meth:`reply` sends it in sentences)."""
        greeting = _GREETING.match(question)
        if greeting:
            question = question[greeting.end():]
        question, thanked = _THANKS.subn(" ", question)
        question, farewell = _FAREWELL.subn(" ", question)
        if not tokenize(question):
            if farewell:
                return ("You're welcome! " if thanked else "") + "Goodbye, and have a lovely day!"
            if thanked:
                return self.thanks()
            if greeting:
                return self.greeting()
            return "How can I help you? Ask me anything about our shop, products, orders or delivery."
        match = self.knowledge.best(question)
        text = match.section.answer if match else self.unknown()
        if greeting:
            text = "Hello! " + text
        elif thanked and match:
            text = "You're welcome! " + text
        return text

    async def reply(self, history):
        self.knowledge.reload_if_changed()
        question = history[-1]["text"] if history else ""
        for piece in split_sentences(self.answer(question)):
            yield piece
            await asyncio.sleep(0)
