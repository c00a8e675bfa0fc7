"""The knowledge consultant's evaluation: visitors' questions with the section that answers each, or
``refuse`` when the knowledge file has no answer (``en.tsv``, ``de.tsv`` beside this file).

Each line is ``<split>\t<expected>\t<question>``. Round 1 was split once, at random within each
expected section: ``tune`` (tuned on) and ``held1`` (reported, then tuned on too). ``held2`` to
``held7`` are rounds 2 to 7, each written blind afterwards, measured once, then tuned on (their
questions became ``Asked:`` and ``Unanswered:`` lines of the knowledge files). ``held8`` and ``held``
are rounds 8 and 9, written blind on one day and measured once with the same code and files: never
tuned on. ``held`` (round 9) is reported in docs/consultant.md and asserted by
tests/test_consultant_eval.py.

A question counts as answered right when the reply carries at least one section's answer and every
section it carries is one the line accepts; an off-topic question is right when refused.

    python tests/consultant_eval/evaluate.py                 # the tuning questions, with their misses
    python tests/consultant_eval/evaluate.py --split held    # the held-out questions (report only)
    python tests/consultant_eval/evaluate.py --root ../old   # another checkout's consultant (before/after)
"""

import argparse
import inspect
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LANGUAGES = ("en", "de")
REFUSE = "refuse"
SPLITS = ("tune", "held1", "held2", "held3", "held4", "held5", "held6", "held7", "held8", "held")
TUNING = "tuning"  # everything tuned on
UNSEEN = ("held8", "held")  # measured once, never tuned on


@dataclass
class Case:
    split: str
    expected: tuple  # accepted section headings; empty: the consultant must refuse
    question: str


@dataclass
class Outcome:
    case: Case
    answered: list  # headings of the sections in the reply, in order

    @property
    def right(self):
        if not self.case.expected:
            return not self.answered
        return bool(self.answered) and all(title in self.case.expected for title in self.answered)


def load(lang, split=None):
    cases = []
    for number, line in enumerate((HERE / f"{lang}.tsv").read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        part, expected, question = line.split("\t")
        if part not in SPLITS:
            raise ValueError(f"{lang}.tsv line {number}: split must be one of {', '.join(SPLITS)}, got {part!r}")
        titles = () if expected == REFUSE else tuple(title.strip() for title in expected.split(" | "))
        if split in (None, part) or (split == TUNING and part not in UNSEEN):
            cases.append(Case(part, titles, question))
    return cases


def sections_in(reply, sections):
    """Indexes of the ``sections`` whose answer text the reply carries, in the reply's order."""
    found = [(reply.find(section.answer), index) for index, section in enumerate(sections)]
    return [index for position, index in sorted(found) if position >= 0]


def run(consultant, lang, cases, titles):
    """Ask every case; ``titles``: the headings of ``lang``'s file, by position (section i of every
    language's file is the same topic, so an older consultant without that file is scored by position)."""
    takes_lang = "lang" in inspect.signature(consultant.answer).parameters
    sections = (consultant.knowledge.for_language(lang) if takes_lang else consultant.knowledge).sections
    outcomes = []
    for case in cases:
        reply = consultant.answer(case.question, lang) if takes_lang else consultant.answer(case.question)
        outcomes.append(Outcome(case, [titles[index] for index in sections_in(reply, sections)]))
    return outcomes


@dataclass
class Score:
    on_topic: int
    right: int
    answered: int       # replies that carried a section (on- and off-topic)
    off_topic: int
    refused: int

    @property
    def recall(self):
        return self.right / self.on_topic if self.on_topic else 1.0

    @property
    def precision(self):
        return self.right / self.answered if self.answered else 1.0


def score(outcomes):
    on = [o for o in outcomes if o.case.expected]
    off = [o for o in outcomes if not o.case.expected]
    return Score(len(on), sum(o.right for o in on), sum(bool(o.answered) for o in outcomes),
                 len(off), sum(o.right for o in off))


def _asked(line):
    """The question of an ``Asked:`` or ``Unanswered:`` line, lowercased; None for other lines."""
    marker, colon, question = line.partition(":")
    return question.strip().lower() if colon and marker.strip().lower() in ("asked", "unanswered") else None


def headings(lang):
    """The section headings of this checkout's file for ``lang`` (read here, not imported, so that
    ``--root`` can load another checkout's ``server`` package)."""
    name = "knowledge.md" if lang == "en" else f"knowledge.{lang}.md"
    text = re.sub(r"<!--.*?-->", "", (ROOT / name).read_text(encoding="utf-8"), flags=re.DOTALL)
    return [line[3:].strip() for line in text.splitlines() if line.startswith("## ")]


def consultant_from(root, ranker="semantic", folder=None):
    """The knowledge consultant of the checkout at ``root`` as the server builds it by default (an older
    checkout without the semantic ranker: its only ranker), on the files in ``folder`` (default: root's)."""
    sys.path.insert(0, str(root))
    from server.consultants import KnowledgeConsultant

    options = {"contact": {"email": "hello@lantern-loom.example"}}
    if ranker == "semantic" and "embedder" in inspect.signature(KnowledgeConsultant).parameters:
        from server.consultants.semantic import Embedder

        options["embedder"] = Embedder(Path(root) / "var" / "compressed")
    consultant = KnowledgeConsultant(Path(folder or root) / "knowledge.md", **options)
    if "embedder" in options and not consultant.knowledge.wait_ready():
        raise SystemExit("the semantic ranker could not be loaded (see the log above)")
    return consultant


def without_questions(folder, cases_by_language):
    """Copies of this checkout's knowledge files into ``folder`` without the ``Asked:`` and ``Unanswered:``
    lines that are word for word one of the cases' questions: to measure an earlier round as if unseen."""
    for lang, cases in cases_by_language.items():
        name = "knowledge.md" if lang == "en" else f"knowledge.{lang}.md"
        questions = {case.question.strip().lower() for case in cases}
        lines = (ROOT / name).read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [line for line in lines if _asked(line) not in questions]
        (Path(folder) / name).write_text("".join(kept), encoding="utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", choices=(*SPLITS, TUNING, "all"), default=TUNING)
    parser.add_argument("--root", default=str(ROOT), help="the checkout whose consultant answers")
    parser.add_argument("--ranker", choices=("semantic", "words"), default="semantic")
    parser.add_argument("--leave-out", action="store_true",
                        help="drop the split's questions from the files' Asked: lines first (an earlier round as unseen)")
    parser.add_argument("--quiet", action="store_true", help="the table only, no misses")
    args = parser.parse_args()
    titles = {lang: headings(lang) for lang in LANGUAGES}  # from this checkout's files
    cases = {lang: load(lang, None if args.split == "all" else args.split) for lang in LANGUAGES}
    with tempfile.TemporaryDirectory() as folder:
        if args.leave_out:
            without_questions(folder, cases)
        consultant = consultant_from(args.root, args.ranker, folder if args.leave_out else None)
        report(consultant, cases, titles, args)


def report(consultant, cases, titles, args):
    print("| language | split | on-topic right | recall | precision | off-topic refused |")
    print("|---|---|---|---|---|---|")
    misses = []
    for lang in LANGUAGES:
        outcomes = run(consultant, lang, cases[lang], titles[lang])
        result = score(outcomes)
        print(f"| {lang} | {args.split} | {result.right}/{result.on_topic} | {result.recall:.1%} | "
              f"{result.precision:.1%} | {result.refused}/{result.off_topic} |")
        misses += [(lang, o) for o in outcomes if not o.right]
    if not args.quiet:
        for lang, outcome in misses:
            expected = " | ".join(outcome.case.expected) or REFUSE
            got = " + ".join(outcome.answered) or REFUSE
            print(f"- {lang}: {outcome.case.question!r}: expected {expected}; got {got}")


if __name__ == "__main__":
    main()
