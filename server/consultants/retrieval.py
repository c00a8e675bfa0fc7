"""Finding the knowledge section that answers a question: words, stems, and BM25 ranking.

:class:`Analyzer` turns text into search tokens for one language: lowercase words, stop words dropped
(bm25s's lists, NLTK's, plus the small talk of a chat), synonyms mapped onto one word, and each word
stemmed by the Snowball stemmer of the language (PyStemmer), so "changed", "changing" and "change" are
one token. In compounding languages (German, Dutch, the Nordic ones) a word the file does not contain
is also tried as two words it does ("Teppichgröße" → "Teppich" + "Größe"), and in every language as an
inflection the stemmer missed ("schickt" → "schick").

:class:`Retriever` ranks the sections with ``bm25s`` (the Lucene variant of BM25) and decides whether
the best one is a confident answer; see :meth:`Retriever.search` for the two thresholds.
"""

import math
import re
import unicodedata

import bm25s
import numpy
import Stemmer
from bm25s import stopwords as bm25s_stopwords

from ..languages import base_language

#: Smallest BM25 score of the best section, as a share of the score one distinctive word (found in one
#: section only) earns by appearing once in a section of average length.
MIN_SCORE = 0.5
#: Smallest IDF-weighted share of the question's content words that must occur in the best section.
MIN_COVERAGE = 0.55
#: Weight of a word the file never mentions, as a multiple of the IDF of a word found in one section.
UNSEEN_WEIGHT = 1.4

# Language tag -> Snowball stemmer name (PyStemmer), for the languages a site is likely to write in.
STEMMERS = {
    "ar": "arabic", "ca": "catalan", "cs": "czech", "da": "danish", "de": "german", "el": "greek",
    "en": "english", "es": "spanish", "eu": "basque", "fi": "finnish", "fr": "french", "ga": "irish",
    "hi": "hindi", "hu": "hungarian", "hy": "armenian", "id": "indonesian", "it": "italian",
    "lt": "lithuanian", "nb": "norwegian", "ne": "nepali", "nl": "dutch", "nn": "norwegian",
    "no": "norwegian", "pl": "polish", "pt": "portuguese", "ro": "romanian", "ru": "russian",
    "sr": "serbian", "sv": "swedish", "ta": "tamil", "tr": "turkish", "yi": "yiddish",
}
STOPWORDS = {
    "en": bm25s_stopwords.STOPWORDS_EN_PLUS, "de": bm25s_stopwords.STOPWORDS_GERMAN,
    "nl": bm25s_stopwords.STOPWORDS_DUTCH, "fr": bm25s_stopwords.STOPWORDS_FRENCH,
    "es": bm25s_stopwords.STOPWORDS_SPANISH, "pt": bm25s_stopwords.STOPWORDS_PORTUGUESE,
    "it": bm25s_stopwords.STOPWORDS_ITALIAN, "ru": bm25s_stopwords.STOPWORDS_RUSSIAN,
    "sv": bm25s_stopwords.STOPWORDS_SWEDISH, "no": bm25s_stopwords.STOPWORDS_NORWEGIAN,
    "nb": bm25s_stopwords.STOPWORDS_NORWEGIAN, "da": bm25s_stopwords.STOPWORDS_DANISH,
    "tr": bm25s_stopwords.STOPWORDS_TURKISH,
}
# What visitors add around a question in a chat, which says nothing about its topic.
CHAT_STOPWORDS = {
    "en": """
        a able about above actually after again all also am an and any anything are aren arent as at
        be been before being but by can cant cheers could couldn couldnt d did didn didnt do does
        doesn doesnt doing don dont down during each else ever for from further get gets getting go
        goes going good got great had has have having he hello her here hers hey hi him his hiya how
        i id if ill im in into is isn isnt it its ive just kind know last let lets like ll lot m many may
        me might more most much must my need nice no nor not now nr of off ok okay on once one ones
        only or other our ours out over own please pls plz possible question quick r re real really
        s same say shall she should so some something sort such t tell than thank thanks that thats
        the their them then there theres these they thing things this those through thx to too type
        u under until up ur us ve very want was wasn wasnt way we well were what whats when wheres
        which while whom whos why will with won wont would wouldn wouldnt y yes you youd youll your
        youre yours""",
    "de": """hallo hi hey moin servus guten danke dankeschön bitte gerne gern mal kurz
        kurze frage fragen möchte möchten will wollen würde würden könnte könnten kann können gibt
        gibts geht ja nein ok okay super toll eigentlich bitteschön vielen dank grüß gott tschüss lg
        habt hab habe haben darf dürfen bekomme bekommen krieg kriege ca etwa so schon noch tun soll
        sollte man wann wo wie was welche welcher welches welchen wer warum wieso weshalb woher wohin""",
}
#: The languages a knowledge file may be in (``knowledge.<lang>.md``): those with a stemmer or stop words.
KNOWN_LANGUAGES = frozenset(STEMMERS) | frozenset(STOPWORDS)
COMPOUNDING = frozenset({"de", "nl", "sv", "da", "no", "nb", "nn", "fi"})

_WORD = re.compile(r"[^\W_]+")
_APOSTROPHES = re.compile(r"[\u2019'`]")
_DIMENSIONS = re.compile(r"(?<=\d)\s*[x×*]\s*(?=\d)", re.IGNORECASE)  # "3x4", "60 × 90": a size
_US = re.compile(r"\bU\.?S\.?(?:A\.?)?(?![\w.])")  # "US"/"U.S." is a country, not the stop word "us"
_LINKS = ("s", "es", "n", "en", "e")  # German and Dutch joints between the parts of a compound
_MIN_PART = 3
_MAX_COMPOUND = 40  # letters; a longer "word" is not a compound (and splitting costs its length squared)


class Analyzer:
    """Text → search tokens for one language. ``synonyms``: groups of words or phrases that mean the
    same; every member becomes the group's first member's tokens."""

    def __init__(self, language="en", synonyms=()):
        self.language = base_language(language) or "en"
        name = STEMMERS.get(self.language)
        self._stemmer = Stemmer.Stemmer(name) if name else None
        extra = CHAT_STOPWORDS.get(self.language, "").split()
        self.stopwords = frozenset(_plain(word) for word in [*STOPWORDS.get(self.language, ()), *extra])
        # A phrase is looked for as written, stop words included ("how much"), then with the stop words
        # of both sides dropped ("send it back" is "send back").
        self._phrases = {}   # stems of all its words -> the file's word's tokens
        self._synonyms = {}  # stems of its content words -> the file's word's tokens
        for group in synonyms:
            canonical = [self.stem(word) for word in self.content_words(group[0])]
            for member in group[1:]:
                for table, words in ((self._phrases, self.words(member)), (self._synonyms, self.content_words(member))):
                    stems = tuple(self.stem(word) for word in words)
                    if stems and canonical and list(stems) != canonical:
                        table[stems] = canonical
        # The lengths of their keys, longest first: the only run lengths worth looking up.
        self._phrase_sizes = _sizes(self._phrases)
        self._synonym_sizes = _sizes(self._synonyms)

    @property
    def stemmer_name(self):
        return STEMMERS.get(self.language, "none")

    def words(self, text):
        """Lowercase words without apostrophes, stop words kept (``"Don't"`` → ``"dont"``)."""
        if self.language == "en" and not text.isupper():  # in ALL CAPS "US" is just "us"
            text = _US.sub("usa", text)
        return _WORD.findall(_DIMENSIONS.sub(" dimension ", _plain(text)))

    def stem(self, word):
        return self._stemmer.stemWord(word) if self._stemmer and word.isalpha() else word

    def content_words(self, text):
        return [word for word in self.words(text) if word not in self.stopwords]

    def analyze(self, text):
        """``text`` as ``(word, tokens)`` pairs: a content word and its stem, or ``(None, tokens)`` for a
        synonym ("how much", "send back") replaced by the file's word. Stop words are dropped."""
        words = self.words(text)
        items = _replace(self._phrases, self._phrase_sizes, [(word, [self.stem(word)]) for word in words])
        items = [(word, tokens) for word, tokens in items if word is None or word not in self.stopwords]
        return _replace(self._synonyms, self._synonym_sizes, items)

    def tokens(self, text):
        """The search tokens of ``text``: content words, stemmed, synonyms replaced."""
        return [token for _, tokens in self.analyze(text) for token in tokens]


def _sizes(table):
    return sorted({len(key) for key in table}, reverse=True)


def _replace(table, sizes, items):
    """``items`` with each run whose stems are a key of ``table`` replaced by ``(None, its tokens)``,
    the longest run first; ``sizes``: the lengths of the keys (``_sizes``). Runs the question's every
    word through the table for every message: a key length no key has is not looked up."""
    if not table:
        return items
    stems = [None if word is None else tokens[0] for word, tokens in items]  # None: replaced already
    out = []
    index = 0
    while index < len(items):
        for size in sizes:
            run = stems[index:index + size]
            if len(run) < size or None in run:
                continue
            replacement = table.get(tuple(run))
            if replacement is not None:
                out.append((None, list(replacement)))
                index += size
                break
        else:
            out.append(items[index])
            index += 1
    return out


def _plain(text):
    # NFKC: "ö" typed as "o" + a combining mark, or full-width letters, are the file's letters.
    return _APOSTROPHES.sub("", unicodedata.normalize("NFKC", text).lower())


class Match:
    """A ranked section: its ``index``, BM25 ``score``, the share of the question it ``coverage`` s, and
    whether both pass the thresholds (``confident``)."""

    def __init__(self, index, score, coverage, confident):
        self.index = index
        self.score = score
        self.coverage = coverage
        self.confident = confident

    def __repr__(self):
        return f"Match({self.index}, score={self.score:.2f}, coverage={self.coverage:.2f}, confident={self.confident})"


class Retriever:
    """A BM25 index over ``texts`` (one per section) for questions in ``language``."""

    def __init__(self, texts, language="en", synonyms=(), k1=1.5, b=0.75):
        self.analyzer = Analyzer(language, synonyms)
        self._compounding = self.analyzer.language in COMPOUNDING
        documents = [self.analyzer.tokens(text) for text in texts]
        self.vocabulary = {stem for document in documents for stem in document}
        if not self.vocabulary:
            raise ValueError("it has no words to search: every section is only stop words")
        if self._compounding:  # a compound in the file also counts as its parts
            known = {}
            documents = [document + self._parts_of_compounds(text, known) for document, text in zip(documents, texts)]
            self.vocabulary = {stem for document in documents for stem in document}
        self._sets = [set(document) for document in documents]
        count = len(documents)
        frequency = {}
        for tokens in self._sets:
            for token in tokens:
                frequency[token] = frequency.get(token, 0) + 1
        self._idf = {token: _idf(count, found) for token, found in frequency.items()}
        self._unseen_idf = UNSEEN_WEIGHT * _idf(count, 1)
        self._bm25 = bm25s.BM25(method="lucene", k1=k1, b=b)
        self._bm25.index(documents, show_progress=False)
        # One distinctive word, once, in a section of average length: idf * 1 / (1 + k1).
        self.min_score = MIN_SCORE * _idf(count, 1) / (1 + k1)

    def _parts_of_compounds(self, text, known):
        """The parts of the compounds in ``text``; ``known``: the words split so far (a file repeats them)."""
        parts = []
        for word in self.analyzer.content_words(text):
            if word not in known:
                known[word] = self._split(word)
            parts.extend(known[word] or ())
        return parts

    def _split(self, word):
        """Two stems of the file that ``word`` is made of (with a joint such as German "s"), or None."""
        if len(word) > _MAX_COMPOUND:
            return None
        for cut in range(len(word) - _MIN_PART, _MIN_PART - 1, -1):
            head, tail = word[:cut], word[cut:]
            tail_stem = self.analyzer.stem(tail)
            if tail_stem not in self.vocabulary:
                continue
            for candidate in (head, *[head[:-len(link)] for link in _LINKS if head.endswith(link)]):
                if len(candidate) >= _MIN_PART:
                    head_stem = self.analyzer.stem(candidate)
                    if head_stem in self.vocabulary:
                        return [head_stem, tail_stem]
        return None

    def _inflection(self, word):
        """The file's stem that ``word`` begins with, leaving one or two letters (an inflection the
        stemmer does not know: German "schickt" → "schick"), or None."""
        for cut in (1, 2):
            if len(word) - cut >= 4 and word.isalpha() and word[:-cut] in self.vocabulary:
                return word[:-cut]
        return None

    def query_tokens(self, question):
        """The tokens of ``question``, each word the file lacks tried as a compound, then as an inflection."""
        tokens = []
        for word, found in self.analyzer.analyze(question):
            stem = found[0]
            if word is None:  # a synonym phrase
                tokens.extend(found)
                continue
            if stem not in self.vocabulary:
                if word.isdigit():  # an order number or a quantity the file doesn't mention: no topic
                    continue
                split = self._split(word) if self._compounding else None
                if split:
                    tokens.extend(split)
                    continue
                stem = self._inflection(word) or stem
            tokens.append(stem)
        return tokens

    def idf(self, token):
        """IDF as BM25 computes it; a word the file lacks gets the highest weight."""
        return self._idf.get(token, self._unseen_idf)

    def search(self, question, limit=3):
        """The ``limit`` best sections for ``question`` as :class:`Match` es, best first.

        Sections that share no content word with the question are never returned. The best one is a
        confident answer only when its score is at least :attr:`min_score` (one distinctive word is
        enough, one found in most sections is not) and it contains at least :data:`MIN_COVERAGE` of
        the question's content words weighted by IDF, where words the file never mentions weigh the
        most (so "what's the capital of Belgium", where only "Belgium" is known, is not answered with
        the address, while a filler word the file lacks does not sink a question whose key words match).
        """
        query = self.query_tokens(question)
        unique = list(dict.fromkeys(query))
        known = [token for token in query if token in self.vocabulary]
        if not known:
            return []
        total = sum(self.idf(token) for token in unique)
        scores = self._bm25.get_scores(known)
        matches = []
        for index in numpy.argsort(-scores, kind="stable")[:limit]:
            score = float(scores[index])
            present = [token for token in unique if token in self._sets[index]]
            if not present or score <= 0:
                continue
            coverage = sum(self.idf(token) for token in present) / total
            matches.append(Match(index, score, coverage, score >= self.min_score and coverage >= MIN_COVERAGE))
        return matches


def _idf(count, found):
    """Lucene's always-positive IDF, as bm25s's ``lucene`` method computes it."""
    return math.log(1 + (count - found + 0.5) / (found + 0.5))
