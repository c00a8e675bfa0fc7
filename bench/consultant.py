"""The offline ``knowledge`` consultant (server/consultants/knowledge.py): start-up (index build), time
per answer, and memory, against a naive substring-scanning FAQ bot measured in the same run.

File sets:

* ``demo``: the repository's knowledge.md + knowledge.de.md (what ``make serve`` answers from);
* ``generated en`` / ``generated de``: one knowledge file of ``--sections`` (2,000) sections each,
  written to a temporary directory (the German one declares ``Language: de``). Generated
  deterministically (``random.Random(--seed)``) in the format of knowledge.md: a ``## `` question about
  a product, a ``Keywords:`` line of 8-20 words and phrases, a 40-120 word answer. The vocabulary is a
  few thousand words: the demo file's own words and sentences, invented product names (syllable
  combinations), product kinds, colours, materials and sizes (and, in German, compounds of the demo
  file's nouns).

Measured:

1. Start-up: the time to construct ``KnowledgeConsultant(path)`` (parse + build every index), median
   and min-max of ``--runs`` constructions per file set, interleaved run by run; the tracemalloc peak
   of one more construction (and what the finished consultant still holds); and the time of
   ``import server.consultants`` in a fresh ``python`` process (median of ``--import-runs``).
2. Answers: ``consultant.answer(question, lang)`` for every question of tests/consultant_eval/en.tsv
   (lang ``en``) and de.tsv (``de``): the demo set with both, each generated file with its own
   language's questions (which it mostly cannot answer; the ranking still runs over all sections).
   Each question is asked ``--runs`` times (after one untimed pass); its time is the median of
   those; the table gives the median, p90 and max over the questions.
3. Baseline, per question right after each answer: a naive FAQ bot, i.e. a plain Python substring scan
   of the question's lowercased words over every section's lowercased text (heading, keywords and
   answer, lowercased once at start), keeping the section with most hits. ``× naive scan`` = median
   answer time / median scan time.

4. The semantic ranker (``--ranker semantic``, the server's default; skipped with ``--words-only``):
   loading the model in a fresh process; the time until a file set's examples are embedded, cold
   (nothing cached: what the first start costs) and warm (the vectors on disk: every later start);
   and the time per answer of every evaluation question, each a new question to the model (its
   in-memory question cache is off here), one timed pass. Generated files for it have
   ``--semantic-sections`` (300) sections: a section without ``Asked:`` lines is compared by its
   keyword phrases, about 15 examples each, so a cold 2,000-section file would take minutes (it is
   embedded in the background; the words answer meanwhile).

    .venv/bin/python bench/consultant.py                  # 7 runs, 2,000-section files: about 2 minutes
    .venv/bin/python bench/consultant.py --runs 3 --sections 5000
    .venv/bin/python bench/consultant.py --smoke          # 1 run, 200 sections (CI smoke)

Prints markdown tables; writes bench/results/consultant-<time>.json (and consultant-latest.json).
"""

import argparse
import gc
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from common import ROOT, write_results

sys.path.insert(0, str(ROOT))

from server.consultants import semantic  # noqa: E402
from server.consultants.knowledge import KnowledgeConsultant, parse_knowledge  # noqa: E402

EVAL = ROOT / "tests" / "consultant_eval"
MIB = 1024 * 1024

# ---- the generated knowledge files -------------------------------------------------------------------

SYLLABLES = ("al bri cor da el fen gor hal is jun ka lor mi nor o pel quin ra sol ta ul ven wy xa yor zen an ber "
             "cas dor lin mar nel ros tin vel fa gri ho lu se tho").split()

WORDS = {
    "en": {
        "kinds": ["lamp", "table lamp", "floor lamp", "pendant lamp", "wall lamp", "lampshade", "rug", "runner",
                  "cushion", "throw", "blanket", "wall hanging", "basket", "doormat", "bath mat"],
        "colours": ["indigo", "ochre", "sand", "charcoal", "ivory", "moss green", "rust", "slate blue", "natural",
                    "terracotta", "oat", "forest green", "mustard", "navy", "blush"],
        "materials": ["wool", "linen", "cotton", "jute", "brass", "oak", "walnut", "ceramic", "glass", "paper",
                      "rattan", "copper", "hemp", "silk"],
        "sizes": ["small", "medium", "large", "extra large", "60 x 90 cm", "120 x 180 cm", "160 x 230 cm",
                  "200 x 300 cm", "round 150 cm", "70 x 250 cm"],
        "questions": [
            "How do I clean the {name} {kind}?", "Is the {name} {kind} available in {colour}?",
            "What does the {name} {kind} cost?", "How big is the {name} {kind}?",
            "Can I order the {name} {kind} in {material}?", "Which bulb fits the {name} {kind}?",
            "How long is the warranty on the {name} {kind}?", "Where is the {name} {kind} made?",
            "Can I return the {name} {kind}?", "When will the {name} {kind} be back in stock?",
        ],
        "sentences": [
            "The {name} {kind} is made by hand from {material} in our Ghent workshop.",
            "It comes in {colour} and {colour2}, in sizes from {size} to {size2}.",
            "The {name} {kind} costs {price} euros; delivery is free on orders over 50 euros.",
            "Many customers pair it with the {name2} {kind2} in {colour2}.",
            "Each piece is checked by hand before it leaves the workshop, so small differences in {word} and "
            "{word2} are part of its character.",
            "We make about {count} pieces of the {colour} {name} {kind} a month, so it is sometimes sold out.",
            "Ask us about {word}, {word2} or {word3} if you need something special.",
            "- {material}, {colour}, {size}",
        ],
        "header": "Generated knowledge file for bench/consultant.py (not the shop's).",
    },
    "de": {
        "kinds": ["Lampe", "Tischlampe", "Stehlampe", "Pendelleuchte", "Wandleuchte", "Lampenschirm", "Teppich",
                  "Läufer", "Kissen", "Plaid", "Decke", "Wandbehang", "Korb", "Fußmatte", "Badematte"],
        "colours": ["Indigo", "Ocker", "Sand", "Anthrazit", "Elfenbein", "Moosgrün", "Rost", "Schieferblau", "Natur",
                    "Terrakotta", "Hafer", "Waldgrün", "Senfgelb", "Marineblau", "Altrosa"],
        "materials": ["Wolle", "Leinen", "Baumwolle", "Jute", "Messing", "Eiche", "Walnuss", "Keramik", "Glas",
                      "Papier", "Rattan", "Kupfer", "Hanf", "Seide"],
        "sizes": ["klein", "mittel", "groß", "extra groß", "60 x 90 cm", "120 x 180 cm", "160 x 230 cm",
                  "200 x 300 cm", "rund 150 cm", "70 x 250 cm"],
        "questions": [
            "Wie reinige ich {kind} {name}?", "Gibt es {kind} {name} auch in {colour}?", "Was kostet {kind} {name}?",
            "Wie groß ist {kind} {name}?", "Kann ich {kind} {name} aus {material} bestellen?",
            "Welche Glühbirne passt in {kind} {name}?", "Wie lange gilt die Garantie für {kind} {name}?",
            "Wo wird {kind} {name} hergestellt?", "Kann ich {kind} {name} zurückgeben?",
            "Wann ist {kind} {name} wieder lieferbar?",
        ],
        "sentences": [
            "{kind} {name} wird in unserer Werkstatt in Gent von Hand aus {material} gefertigt.",
            "Es gibt sie in {colour} und {colour2}, in Größen von {size} bis {size2}.",
            "{kind} {name} kostet {price} Euro; ab 50 Euro liefern wir versandkostenfrei.",
            "Viele Kunden kombinieren sie mit {kind2} {name2} in {colour2}.",
            "Jedes Stück wird von Hand geprüft, bevor es die Werkstatt verlässt; kleine Unterschiede bei {word} "
            "und {word2} gehören zu seinem Charakter.",
            "Wir fertigen etwa {count} Stück von {kind} {name} in {colour} im Monat, daher ist sie manchmal "
            "ausverkauft.",
            "Fragen Sie uns nach {word}, {word2} oder {word3}, wenn Sie etwas Besonderes brauchen.",
            "- {material}, {colour}, {size}",
        ],
        "header": "Generierte Wissensdatei für bench/consultant.py (nicht die des Ladens).",
    },
}

_COMMENT = re.compile(r"<!--.*?-->", re.DOTALL)
_LETTERS = re.compile(r"[^\W\d_]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def demo_material(path):
    """Words, Keywords entries and answer sentences of a demo knowledge file."""
    text = _COMMENT.sub("", path.read_text(encoding="utf-8"))
    sections = text.split("\n## ")[1:]
    keywords, sentences = [], []
    for section in sections:
        for line in section.split("\n")[1:]:
            if line.lower().startswith("keywords:"):
                keywords += [entry.strip() for entry in line.split(":", 1)[1].split(",") if entry.strip()]
            elif line.lower().startswith(("asked:", "synonyms:", "language:")):
                continue  # not answer text: as an answer sentence it would be read as a marked line again
            elif line.strip() and not line.startswith("- "):
                sentences += [s.strip() for s in _SENTENCE.split(line.strip()) if len(s.split()) >= 4]
    words = sorted({word for word in _LETTERS.findall("\n".join(sections)) if len(word) >= 3})
    return words, keywords, sentences


def vocabulary(lang, rng, words, names_count=1500, compounds_count=600):
    """Invented product names, and (German) compounds of the demo file's nouns."""
    names = set()
    while len(names) < names_count:
        names.add("".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 2, 3)))).capitalize())
    compounds = set()
    if lang == "de":
        nouns = [word for word in words if word[:1].isupper() and len(word) >= 4]
        while len(compounds) < compounds_count:
            head, tail = rng.sample(nouns, 2)
            compounds.add(head + tail.lower())
    return sorted(names), sorted(compounds)


def generate(path, lang, sections, seed):
    """Write a ``sections``-section knowledge file in ``lang``; returns its number of distinct words."""
    rng = random.Random(f"{seed}-{lang}")
    table = WORDS[lang]
    demo = ROOT / ("knowledge.md" if lang == "en" else f"knowledge.{lang}.md")
    words, demo_keywords, demo_sentences = demo_material(demo)
    names, compounds = vocabulary(lang, rng, words)
    pool = words + names + compounds + table["kinds"] + table["colours"] + table["materials"]
    keyword_pool = demo_keywords + pool
    lines = [f"<!--\n{table['header']}\nSeed {seed}, {sections} sections.\n-->", "", "# Generated Goods"]
    if lang != "en":
        lines.append(f"Language: {lang}")
    lines.append("")
    for _ in range(sections):
        slot = {
            "name": rng.choice(names), "name2": rng.choice(names),
            "kind": rng.choice(table["kinds"]), "kind2": rng.choice(table["kinds"]),
            "colour": rng.choice(table["colours"]), "colour2": rng.choice(table["colours"]),
            "material": rng.choice(table["materials"]),
            "size": rng.choice(table["sizes"]), "size2": rng.choice(table["sizes"]),
            "price": rng.randrange(19, 990), "count": rng.randrange(5, 200),
            "word": rng.choice(pool), "word2": rng.choice(pool), "word3": rng.choice(pool),
        }
        lines.append("## " + rng.choice(table["questions"]).format(**slot))
        wanted = rng.randint(8, 20)
        entries = [slot["name"], slot["kind"], slot["colour"], slot["material"]]
        entries += rng.sample(keyword_pool, wanted - len(entries))
        lines.append("Keywords: " + ", ".join(entries))
        lines.append("")
        target, body = rng.randint(40, 120), []
        count = 0
        while count < target:
            if rng.random() < 0.5:
                slot.update(word=rng.choice(pool), word2=rng.choice(pool), word3=rng.choice(pool),
                            name2=rng.choice(names), kind2=rng.choice(table["kinds"]))
                sentence = rng.choice(table["sentences"]).format(**slot)
            else:
                sentence = rng.choice(demo_sentences)
            tokens = sentence.split()
            if count + len(tokens) > target:  # cut the last sentence to land on the target length
                tokens = tokens[:max(3, target - count)]
                sentence = " ".join(tokens).rstrip(",;:") + ("" if tokens[-1].endswith(".") else ".")
            body.append(sentence)
            count += len(tokens)
        paragraph = []
        for sentence in body:  # bullets on their own lines, the rest as paragraphs
            if sentence.startswith("- "):
                if paragraph:
                    lines += [" ".join(paragraph), ""]
                    paragraph = []
                lines += [sentence, ""]
            else:
                paragraph.append(sentence)
        if paragraph:
            lines += [" ".join(paragraph), ""]
    text = "\n".join(lines)
    path.write_text(text, encoding="utf-8")
    return len({word.lower() for word in _LETTERS.findall(_COMMENT.sub("", text))})


# ---- the naive baseline --------------------------------------------------------------------------------

def section_texts(path):
    """Every ``## `` section of a knowledge file (heading, keywords, answer), lowercased."""
    text = _COMMENT.sub("", path.read_text(encoding="utf-8"))
    return [section.lower() for section in text.split("\n## ")[1:]]


def naive_answer(question, texts):
    """A naive FAQ bot: the section containing most of the question's lowercased words as substrings."""
    words = question.lower().split()
    best, best_hits = None, 0
    for index, text in enumerate(texts):
        hits = 0
        for word in words:
            if word in text:
                hits += 1
        if hits > best_hits:
            best, best_hits = index, hits
    return best


# ---- measuring -----------------------------------------------------------------------------------------

def questions(lang):
    found = []
    for line in (EVAL / f"{lang}.tsv").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            found.append(line.split("\t")[-1])  # <split>\t<expected>\t<question>
    return found


def build(path):
    started = time.perf_counter()
    consultant = KnowledgeConsultant(path)
    return consultant, time.perf_counter() - started


def build_memory(path):
    """tracemalloc peak while building, and what the built consultant still holds (bytes)."""
    gc.collect()
    tracemalloc.start()
    try:
        consultant = KnowledgeConsultant(path)
        held, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del consultant
    return peak, held


IMPORT = "import time; t = time.perf_counter(); import server.consultants; print(time.perf_counter() - t)"


def import_times(runs):
    times = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", IMPORT], cwd=ROOT, capture_output=True, text=True, check=True)
        times.append(float(done.stdout.strip().splitlines()[-1]))
    return times


def percentile(values, fraction):
    """Nearest-rank percentile (as bench/capacity.py)."""
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(fraction * (len(values) - 1))))]


def ms(seconds, digits=None):
    value = seconds * 1000
    if digits is None:
        digits = 0 if value >= 100 else 1 if value >= 10 else 2 if value >= 1 else 3
    return f"{value:,.{digits}f}"


def ratio(value):
    return f"{value:,.0f}x" if value >= 10 else f"{value:.2f}x"


def markdown_table(headers, rows, right=()):
    """A markdown table, padded for the terminal; columns in ``right`` are right-aligned."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(3, *(len(row[i]) for row in cells)) for i in range(len(headers))]

    def line(row):
        return "| " + " | ".join(c.rjust(w) if i in right else c.ljust(w)
                                 for i, (c, w) in enumerate(zip(row, widths))) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def versions():
    found = {}
    from importlib.metadata import PackageNotFoundError, version
    for name in ("bm25s", "PyStemmer", "numpy", "scipy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


MODEL_LOAD = ("import time; from server.consultants import semantic; t = time.perf_counter(); "
              "semantic.load_model(); print(time.perf_counter() - t)")  # after the import, timed above


def ready_time(path, embedder):
    """Seconds from constructing the consultant until its examples are embedded, and the consultant."""
    started = time.perf_counter()
    consultant = KnowledgeConsultant(path, embedder=embedder)
    if not consultant.knowledge.wait_ready():
        raise SystemExit("the semantic ranker could not be loaded")
    return time.perf_counter() - started, consultant


def measure_semantic(args, tmp, demo, eval_questions):
    """Start-up (model load; examples embedded, cold and warm) and answer times of the semantic ranker."""
    loads = []
    for _ in range(args.import_runs):
        done = subprocess.run([sys.executable, "-c", MODEL_LOAD], cwd=ROOT, capture_output=True, text=True, check=True)
        loads.append(float(done.stdout.strip().splitlines()[-1]))
    semantic.load_model()  # this process's, once (as the server's)
    semantic.QUESTION_CACHE = 0  # every question is new to the model: the cost of a visitor's question
    # The smoke run leaves out the demo's files: 1,472 examples cold are 18 s of CPU.
    sets = {} if args.smoke else {"demo": (demo, {"en": ROOT / "knowledge.md", "de": ROOT / "knowledge.de.md"})}
    for lang in ("en", "de"):
        folder = tmp / f"semantic-{lang}"
        folder.mkdir()
        generate(folder / "knowledge.md", lang, args.semantic_sections, args.seed)
        sets[f"generated {lang}"] = (folder / "knowledge.md", {lang: folder / "knowledge.md"})
    startup, consultants = {}, {}
    for name, (path, _) in sets.items():
        cache = tmp / f"cache-{name.replace(' ', '-')}"
        cold, _ = ready_time(path, semantic.Embedder(cache))  # fills the cache
        warm = []
        for _ in range(args.runs):
            seconds, consultants[name] = ready_time(path, semantic.Embedder(cache))
            warm.append(seconds)
        sections = [section for file in set(consultants[name].knowledge.files.values()) for section in file.sections]
        startup[name] = {"sections": len(sections), "examples": sum(len(section.examples) for section in sections),
                         "cold_s": cold, "warm_s": warm}
        print(f"semantic start-up {name:12} cold {ms(cold)} ms, warm {ms(statistics.median(warm))} ms",
              file=sys.stderr, flush=True)
    answers = {}
    for name, lang in [(name, lang) for name, lang in [("demo", "en"), ("demo", "de"), ("generated en", "en"),
                                                        ("generated de", "de")] if name in sets]:
        consultant, times = consultants[name], []
        for question in eval_questions[lang][:10 if args.smoke else None]:
            gc.disable()
            try:
                started = time.perf_counter()
                consultant.answer(question, lang)
                times.append(time.perf_counter() - started)
            finally:
                gc.enable()
        answers[f"{name}/{lang}"] = times
        print(f"semantic answers {name:12} {lang}: median {ms(statistics.median(times))} ms", file=sys.stderr, flush=True)
    return {"model_load_s": loads, "startup": startup, "answers": answers}


def report_semantic(args, result):
    loads = result["model_load_s"]
    rows = [["load the model (fresh process)", "", "", "", ms(statistics.median(loads)), f"{ms(min(loads))}-{ms(max(loads))}"]]
    for name, found in result["startup"].items():
        warm = found["warm_s"]
        rows.append([name, f"{found['sections']:,}", f"{found['examples']:,}", ms(found["cold_s"]),
                     ms(statistics.median(warm)), f"{ms(min(warm))}-{ms(max(warm))}"])
    print(f"\nsemantic ranker: start-up = until the examples are embedded; cold = nothing cached (once), warm = "
          f"vectors on disk (median of {args.runs}); the words answer meanwhile\n")
    print(markdown_table(["file set", "sections", "examples", "cold ms", "warm median ms", "warm min-max ms"], rows,
                         right={1, 2, 3, 4, 5}))
    rows = []
    for key, times in result["answers"].items():
        name, lang = key.split("/")
        rows.append([f"{name}, {lang} questions", len(times), ms(statistics.median(times)),
                     ms(percentile(times, 0.9)), ms(max(times))])
    print("\nsemantic ranker: answers, each question new to the model, one pass\n")
    print(markdown_table(["file set", "questions", "median ms", "p90 ms", "max ms"], rows, right={1, 2, 3, 4}))


def main(argv=None):
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="constructions per file set, and asks per question")
    parser.add_argument("--sections", type=int, default=2000, help="sections of each generated file")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--import-runs", type=int, default=5, help="fresh processes timing the import")
    parser.add_argument("--smoke", action="store_true", help="1 run, 200 sections, 2 imports (CI smoke)")
    parser.add_argument("--label", default="", help="free text stored with the results (e.g. 'before')")
    parser.add_argument("--semantic-sections", type=int, default=300, help="sections of the semantic ranker's generated files")
    parser.add_argument("--words-only", action="store_true", help="skip the semantic ranker's measurements")
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.sections, args.import_runs, args.semantic_sections = 1, 200, 2, 20
    started = time.time()
    eval_questions = {lang: questions(lang) for lang in ("en", "de")}

    with tempfile.TemporaryDirectory(prefix="bench-consultant-") as tmp:
        # File sets: name -> (path given to KnowledgeConsultant, {lang: file answering it}, distinct words)
        sets = {"demo": (ROOT / "knowledge.md", {"en": ROOT / "knowledge.md", "de": ROOT / "knowledge.de.md"}, None)}
        for lang in ("en", "de"):
            folder = Path(tmp) / lang
            folder.mkdir()
            path = folder / "knowledge.md"
            distinct = generate(path, lang, args.sections, args.seed)
            sets[f"generated {lang}"] = (path, {lang: path}, distinct)
            print(f"generated {path} ({args.sections} sections, {path.stat().st_size / 1024:,.0f} KiB, "
                  f"{distinct:,} distinct words)", file=sys.stderr, flush=True)
        demo_words = len({w.lower() for p in sets["demo"][1].values()
                          for w in _LETTERS.findall(_COMMENT.sub("", p.read_text(encoding="utf-8")))})
        sets["demo"] = (*sets["demo"][:2], demo_words)

        # 1. start-up
        imports = import_times(args.import_runs)
        print(f"import server.consultants: {ms(statistics.median(imports))} ms", file=sys.stderr, flush=True)
        builds = {name: [] for name in sets}
        consultants = {}
        for run in range(args.runs):
            for name, (path, _, _) in sets.items():
                consultants.pop(name, None)
                gc.collect()
                consultants[name], seconds = build(path)
                builds[name].append(seconds)
                print(f"run {run + 1}/{args.runs} build {name:12} {ms(seconds):>8} ms", file=sys.stderr, flush=True)
        memory = {}
        for name, (path, _, _) in sets.items():
            consultants.pop(name, None)
            memory[name] = build_memory(path)
            consultants[name], _ = build(path)
        # what the consultant indexes (a section without an answer is dropped), not what was written
        sections = {name: sum(len(parse_knowledge(p.read_text(encoding="utf-8")).sections) for p in files.values())
                    for name, (_, files, _) in sets.items()}

        # 2. + 3. answers and the naive scan, interleaved question by question
        cases = [("demo", "en"), ("demo", "de"), ("generated en", "en"), ("generated de", "de")]
        answers, scans, replies = {}, {}, {}
        for name, lang in cases:
            consultant, texts = consultants[name], section_texts(sets[name][1][lang])
            asked = eval_questions[lang]
            for question in asked:  # warm-up: first-call costs belong to start-up, not to an answer
                consultant.answer(question, lang)
            per_answer = [[] for _ in asked]
            per_scan = [[] for _ in asked]
            unknown = 0
            for run in range(args.runs):
                for index, question in enumerate(asked):
                    gc.disable()
                    try:
                        t0 = time.perf_counter()
                        reply = consultant.answer(question, lang)
                        t1 = time.perf_counter()
                        naive_answer(question, texts)
                        t2 = time.perf_counter()
                    finally:
                        gc.enable()
                    per_answer[index].append(t1 - t0)
                    per_scan[index].append(t2 - t1)
                    if run == 0:
                        unknown += reply == consultant.answer("zzqx", lang)  # the "don't know" reply
            answers[(name, lang)] = [statistics.median(times) for times in per_answer]
            scans[(name, lang)] = [statistics.median(times) for times in per_scan]
            replies[(name, lang)] = unknown
            print(f"answers {name:12} {lang}: {len(asked)} questions, median {ms(statistics.median(answers[(name, lang)]))} ms",
                  file=sys.stderr, flush=True)
        section_sizes = {name: sets[name][2] for name in sets}
        by_meaning = None if args.words_only else measure_semantic(args, Path(tmp), sets["demo"][0], eval_questions)

    # report
    elapsed = time.time() - started
    startup_rows = [["import server.consultants (fresh process)", "", "", ms(statistics.median(imports)),
                     f"{ms(min(imports))}-{ms(max(imports))}", ""]]
    for name in sets:
        values = builds[name]
        startup_rows.append([name, f"{sections[name]:,}", f"{section_sizes[name]:,}", ms(statistics.median(values)),
                             f"{ms(min(values))}-{ms(max(values))}", f"{memory[name][0] / MIB:.1f}"])
    answer_rows = []
    for name, lang in cases:
        values, naive = answers[(name, lang)], scans[(name, lang)]
        answer_rows.append([f"{name}, {lang} questions", len(values), ms(statistics.median(values)),
                            ms(percentile(values, 0.9)), ms(max(values)), ms(statistics.median(naive), 3),
                            ratio(statistics.median(values) / statistics.median(naive)),
                            f"{replies[(name, lang)]}/{len(values)}"])
    print(f"\nconsultant: start-up = KnowledgeConsultant(path), {args.runs} constructions per file set (min-max "
          f"spread), import = {args.import_runs} fresh processes; peak = tracemalloc peak of one construction; "
          f"{elapsed:.0f} s\n")
    print(markdown_table(["file set", "sections", "distinct words", "median ms", "min-max ms", "peak MiB"],
                         startup_rows, right={1, 2, 3, 4, 5}))
    print(f"\nanswers: per question the median of {args.runs} asks (after one warm-up pass); median, p90 and max "
          f"over the questions; naive = substring scan of the question's words over every section, same run\n")
    print(markdown_table(["file set", "questions", "median ms", "p90 ms", "max ms", "naive median ms", "× naive scan",
                          "\"don't know\""], answer_rows, right={1, 2, 3, 4, 5, 6, 7}))
    path = write_results("consultant", {
        "semantic": by_meaning,
        "label": args.label, "runs": args.runs, "sections": args.sections, "seed": args.seed,
        "consultant_versions": versions(),
        "import_s": imports,
        "startup": {name: {"sections": sections[name], "distinct_words": section_sizes[name], "build_s": builds[name],
                           "peak_bytes": memory[name][0], "held_bytes": memory[name][1]} for name in sets},
        "answers": {f"{name}/{lang}": {"questions": len(answers[(name, lang)]), "answer_s": answers[(name, lang)],
                                       "naive_s": scans[(name, lang)], "dont_know": replies[(name, lang)]}
                    for name, lang in cases},
    })
    if by_meaning:
        report_semantic(args, by_meaning)
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
