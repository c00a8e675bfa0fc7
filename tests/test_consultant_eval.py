"""The knowledge consultant on the evaluation questions (tests/consultant_eval/, docs/consultant.md).

The held-out questions are round 9, written blind and never tuned on. The server's default ranker
(meaning and words) answers 94.5 % of its English on-topic questions rightly, but 84.6 % of its German
ones, and answers 14 of its 59 off-topic questions: both short of the issue's targets (docs/consultant.md
says why). These tests hold the line where it was measured, for that ranker and for words alone: a
change that answers fewer held-out questions rightly, or refuses fewer off-topic ones, fails here. Raise
the floors when a change measures better.
"""

import pytest

from consultant_eval import evaluate
from server.consultants import KnowledgeConsultant

# Measured once on the held-out round (docs/consultant.md): right answers and refusals, per language.
HELD_OUT_FLOOR = {
    "semantic": {"en": {"right": 104, "refused": 26}, "de": {"right": 77, "refused": 19}},
    "words": {"en": {"right": 95, "refused": 28}, "de": {"right": 62, "refused": 20}},
}
# Everything tuned on (rounds 1-7), by words: 97.1 % en, 98.6 % de on 2026-12-02 (by meaning, each of the
# 1,500 questions is a model call: too slow for every run). A change to the word ranker that loses what
# tuning won shows here first.
TUNING_FLOOR = {"en": 0.94, "de": 0.94}


@pytest.fixture(scope="module", params=["semantic", "words"])
def consultant(request, embedder):
    chosen = embedder if request.param == "semantic" else None
    consultant = KnowledgeConsultant(evaluate.ROOT / "knowledge.md", contact={"email": "hello@lantern-loom.example"},
                                     embedder=chosen)
    assert consultant.knowledge.wait_ready() == (request.param == "semantic")
    consultant.ranker = request.param
    return consultant


def outcomes(consultant, lang, split):
    return evaluate.run(consultant, lang, evaluate.load(lang, split), evaluate.headings(lang))


@pytest.mark.parametrize("lang", evaluate.LANGUAGES)
def test_held_out_questions_are_answered_and_refused_as_measured(consultant, lang):
    result = evaluate.score(outcomes(consultant, lang, "held"))
    assert result.on_topic >= 50 and result.off_topic >= 10  # the set is all there
    floor = HELD_OUT_FLOOR[consultant.ranker][lang]
    assert result.right >= floor["right"], f"{lang}: {result.right}/{result.on_topic} right, was {floor['right']}"
    assert result.refused >= floor["refused"], f"{lang}: {result.refused}/{result.off_topic} refused, was {floor['refused']}"


@pytest.mark.parametrize("lang", evaluate.LANGUAGES)
def test_tuning_questions_stay_answered_by_words(lang):
    consultant = KnowledgeConsultant(evaluate.ROOT / "knowledge.md")
    result = evaluate.score(outcomes(consultant, lang, evaluate.TUNING))
    assert result.recall >= TUNING_FLOOR[lang], f"{lang}: recall {result.recall:.1%}"


def test_the_evaluation_has_the_size_the_issue_asks_for():
    """At least 150 on-topic and 40 off-topic questions in English and German together, every
    expected heading one of its file's headings."""
    on_topic = off_topic = 0
    for lang in evaluate.LANGUAGES:
        titles = set(evaluate.headings(lang))
        for case in evaluate.load(lang):
            assert set(case.expected) <= titles, (lang, case.question, case.expected)
            on_topic += bool(case.expected)
            off_topic += not case.expected
    assert on_topic >= 150 and off_topic >= 40


def test_a_reply_counts_as_right_only_with_accepted_sections_only():
    case = evaluate.Case("held", ("A", "B"), "q")
    assert evaluate.Outcome(case, ["A"]).right
    assert evaluate.Outcome(case, ["B", "A"]).right
    assert not evaluate.Outcome(case, ["A", "C"]).right
    assert not evaluate.Outcome(case, []).right
    assert evaluate.Outcome(evaluate.Case("held", (), "q"), []).right
