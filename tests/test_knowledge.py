"""The knowledge consultant: retrieval on the shipped knowledge.md and knowledge.de.md, greetings, unknowns,
languages, reloading, errors."""

import os
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from server.config import Config, ConfigError
from server.consultants import HelpDeskConsultant, Knowledge, KnowledgeBase, KnowledgeConsultant, build
from server.consultants.knowledge import KnowledgeText, markdown_to_text, parse_knowledge
from server.consultants.retrieval import Analyzer

ROOT = Path(__file__).resolve().parent.parent
KNOWLEDGE = ROOT / "knowledge.md"
KNOWLEDGE_DE = ROOT / "knowledge.de.md"
CONTACT = {"email": "hello@lantern-loom.example", "phone": "+1 555 0100", "url": ""}


@pytest.fixture(scope="module", params=["semantic", "words"])
def consultant(request, embedder):
    """The consultant as the server makes it (``--ranker semantic``), and ranking by words alone."""
    consultant = KnowledgeConsultant(KNOWLEDGE, contact=CONTACT, embedder=embedder if request.param == "semantic" else None)
    assert consultant.knowledge.wait_ready() == (request.param == "semantic")
    return consultant


async def chunks_for(consultant, question, history=(), lang=None):
    return [chunk async for chunk in consultant.reply([*history, {"author": "visitor", "text": question}], lang)]


async def ask(consultant, question, lang=None):
    return "".join(await chunks_for(consultant, question, lang=lang))


def assert_unknown(reply):
    assert "I don't know" in reply
    assert "hello@lantern-loom.example" in reply
    assert "+1 555 0100" in reply


# Visitor questions, worded the way people type them (not the headings), and a phrase of the right answer.
VISITOR_QUESTIONS = [
    ("what time do you close on saturday?", "Monday to Saturday, 9:00 to 18:00"),
    ("are you open on sundays?", "closed on Sundays"),
    ("where can I find your store?", "12 Weaver Street, 9000 Ghent"),
    ("how long will my package take to arrive?", "within 2 to 4 working days"),
    ("is shipping free?", "free on orders over 50 euros"),
    ("can you send a rug to Germany?", "We ship to all EU countries"),
    ("I want my money back, what do I do?", "within 30 days of purchase for a full refund"),
    ("my lamp stopped working after a year", "2-year warranty"),
    ("can I pay with PayPal?", "Visa, Mastercard, Bancontact, PayPal"),
    ("do you have vouchers I could give as a present?", "Gift cards are available from 25 to 500 euros"),
    ("could you weave a rug in my own colours?", "takes 6 to 8 weeks"),
    ("how do I get a wine stain out of my rug?", "Blot spills straight away"),
    ("what kind of light bulb goes in the lamp?", "E27 LED bulb included"),
    ("are the rugs made of real wool?", "hand-woven from undyed or plant-dyed wool"),
    ("where is my order?", "tracking link"),
    ("I ordered the wrong one, can I cancel?", "cancel or change an order free of charge"),
    ("how much is a lamp?", "start at 39 euros"),
    ("how big are your rugs?", "five standard sizes"),
    ("I'd like to talk to a person", "email us at hello@lantern-loom.example or call +1 555 0100"),
    ("who are the people behind the shop?", "small family workshop"),
]

OFF_TOPIC = [
    "what's the capital of France?",
    "can you fix my car?",
    "tell me a joke about quantum physics",
    "what's the weather like in Ghent tomorrow?",
    "who won the football world cup?",
    "do you sell cars?",
    "what is the meaning of life?",
    "what's the capital of Belgium?",
    "how do I bake bread?",
]


@pytest.mark.parametrize("question, expected", VISITOR_QUESTIONS)
async def test_visitor_questions_get_the_right_section(consultant, question, expected):
    """Questions phrased as visitors would are answered with the matching section's text."""
    reply = await ask(consultant, question)
    assert expected in reply
    assert "I don't know" not in reply


@pytest.mark.parametrize("question", OFF_TOPIC)
async def test_off_topic_questions_get_i_dont_know_with_contacts(consultant, question):
    """Questions the knowledge file doesn't cover get an honest 'I don't know' and the team's contacts."""
    assert_unknown(await ask(consultant, question))


async def test_greetings_are_answered_naturally(consultant):
    """A bare greeting gets a welcome that names the business, not an 'I don't know'."""
    for greeting in ("hi", "Hello!", "good morning", "Hey there", "hello, how are you?"):
        reply = await ask(consultant, greeting)
        assert reply == "Hello, and welcome to Lantern & Loom! How can I help you today?", greeting


async def test_greeting_with_a_question_answers_the_question(consultant):
    """'hi, when are you open?' greets and then gives the opening hours."""
    reply = await ask(consultant, "hi, when are you open?")
    assert reply.startswith("Hello! ")
    assert "Monday to Saturday, 9:00 to 18:00" in reply


async def test_thanks_and_goodbyes_are_answered_naturally(consultant):
    """Thanks get 'You're welcome', a goodbye gets a goodbye, and thanks with a question also answers it."""
    assert await ask(consultant, "thanks!") == "You're welcome! Is there anything else I can help you with?"
    assert await ask(consultant, "Thank you so much") == "You're welcome! Is there anything else I can help you with?"
    assert await ask(consultant, "ok thanks, bye") == "You're welcome! Goodbye, and have a lovely day!"
    reply = await ask(consultant, "Thanks! And do you ship to the UK?")
    assert reply.startswith("You're welcome! ")
    assert "United Kingdom" in reply


async def test_empty_or_vague_messages_invite_a_question(consultant):
    """A message with no content words ('ok', '???') invites a real question instead of guessing."""
    for message in ("ok", "???", "   "):
        reply = await ask(consultant, message)
        assert reply.startswith("How can I help you?"), message


async def test_keywords_line_is_never_shown(consultant):
    """The 'Keywords:' line of a section helps retrieval but never appears in the answer."""
    reply = await ask(consultant, "when are you open?")
    assert "Keywords" not in reply
    assert "holiday" not in reply


async def test_answer_is_streamed_in_sentences(consultant):
    """A multi-sentence answer comes as several chunks that join to the full answer."""
    chunks = await chunks_for(consultant, "how should I clean my rug?")
    assert len(chunks) >= 3
    assert chunks[0] == "Vacuum your rug once a week without the beater brush, and turn it every few months so it wears evenly. "
    assert "".join(chunks).endswith("to stop the colours fading.")


async def test_only_the_latest_question_is_answered(consultant):
    """Earlier turns in the history don't change which section answers the latest question."""
    history = [
        {"author": "visitor", "text": "what are your opening hours?"},
        {"author": "consultant", "text": "Our shop is open Monday to Saturday, 9:00 to 18:00."},
    ]
    reply = "".join(await chunks_for(consultant, "and can I pay with Apple Pay?", history))
    assert "Apple Pay" in reply
    assert "9:00" not in reply


@pytest.mark.parametrize("message", [
    "what are your opening hours? and do you ship to the UK?",  # an "and"
    "what are your opening hours? do you ship to the UK?",      # two question marks
])
async def test_two_questions_in_one_message_get_both_answers(consultant, message):
    """A message asking two things gets both sections' answers, in the order asked, with a blank line between."""
    reply = await ask(consultant, message)
    hours, shipping = reply.index("Monday to Saturday, 9:00 to 18:00"), reply.index("United Kingdom")
    assert hours < reply.index("\n\n") < shipping
    assert "I don't know" not in reply


@pytest.mark.parametrize("lang, message, expected", [
    ("en", "We are driving over from Lille with my grandmother and the children next weekend, she walks "
           "slowly. When do you open on Saturday?", "Monday to Saturday, 9:00 to 18:00"),
    ("de", "Wir kommen naechste Woche mit den Kindern und der Oma aus Aachen nach Gent, die Oma geht "
           "langsam. Wann habt ihr samstags offen?", "9:00 bis 18:00 Uhr"),
])
async def test_the_question_is_found_in_a_long_message_of_context(consultant, lang, message, expected):
    """The sentence that asks is answered, though the context around it shares nothing with the file (by
    words, the whole message alone is no section's; by meaning, it already is)."""
    if consultant.knowledge.for_language(lang).semantic is None:
        assert consultant.knowledge.for_language(lang).best(message) is None
    reply = "".join([chunk async for chunk in consultant.reply([{"author": "visitor", "text": message}], lang)])
    assert expected in reply


async def test_two_topics_joined_by_and_get_both_answers_when_the_whole_matches_neither(consultant):
    """No question mark to split on, and the whole message is no one section's: by words, each side of the
    "and" is answered. By meaning, the whole message is already one section's, so it gets that one."""
    reply = await ask(consultant, "what bulb does the floor lamp take and how do i clean a wool rug")
    if consultant.knowledge.main.semantic is None:
        assert reply.index("E27") < reply.index("\n\n") < reply.index("Vacuum your rug")
    else:
        assert ("E27" in reply) != ("Vacuum your rug" in reply) and "I don't know" not in reply


# Questions the old tokenizer answered wrongly or not at all, and phrases of which the right answer has one.
FORMERLY_FAILING = [
    ("I want to send back the lamp I bought last week", ["full refund"]),
    ("can I get a rug in 3x4 meters", ["five standard sizes", "custom rug"]),
    ("I changed my mind, please cancel order 1234", ["cancel or change an order free of charge"]),
]


@pytest.mark.parametrize("question, expected", FORMERLY_FAILING)
async def test_formerly_failing_questions_get_the_right_section(consultant, question, expected):
    """Returns worded as 'send back', sizes in meters, and a cancellation that mentions changing one's mind."""
    reply = await ask(consultant, question)
    assert any(phrase in reply for phrase in expected), reply
    assert "I don't know" not in reply


async def test_unknown_reply_lists_only_the_contacts_given():
    """Missing contact entries are left out; with none, the reply still points to the team."""
    email_only = KnowledgeConsultant(KNOWLEDGE, contact={"email": "team@example.com", "phone": ""})
    reply = await ask(email_only, "can you fix my car?")
    assert reply == "I'm sorry, I don't know the answer to that. Our team will be glad to help: you can email team@example.com."
    everything = KnowledgeConsultant(KNOWLEDGE, contact={"email": "a@example.com", "phone": "+1 2", "url": "https://example.com/help"})
    reply = await ask(everything, "can you fix my car?")
    assert reply.endswith("you can email a@example.com, call +1 2 or visit https://example.com/help.")
    nobody = KnowledgeConsultant(KNOWLEDGE)
    reply = await ask(nobody, "can you fix my car?")
    assert reply == ("I'm sorry, I don't know the answer to that. "
                     "Please get in touch with our team directly; they will be glad to help.")


KNOWLEDGE_V1 = """# Test Shop

## When are you open?
Keywords: hours, opening times
We are open on weekdays from 8 to 5.

## Do you deliver?
We deliver on Tuesdays.
"""


async def test_file_changes_are_picked_up(tmp_path):
    """Editing the knowledge file changes the answers without a restart."""
    path = tmp_path / "knowledge.md"
    path.write_text(KNOWLEDGE_V1, encoding="utf-8")
    consultant = KnowledgeConsultant(path, reload_interval=0)
    assert await ask(consultant, "what are your opening times?") == "We are open on weekdays from 8 to 5."
    path.write_text(KNOWLEDGE_V1.replace("on weekdays from 8 to 5", "every day from 10 to 4"), encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert await ask(consultant, "what are your opening times?") == "We are open every day from 10 to 4."


async def test_file_is_checked_at_most_every_reload_interval(tmp_path):
    """Changes are noticed on a reply once reload_interval has passed since the last check, not before."""
    now = [100.0]
    path = tmp_path / "knowledge.md"
    path.write_text(KNOWLEDGE_V1, encoding="utf-8")
    consultant = KnowledgeConsultant(path, reload_interval=2.0, clock=lambda: now[0])
    path.write_text(KNOWLEDGE_V1.replace("on Tuesdays", "on Fridays"), encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    now[0] += 1.0
    assert await ask(consultant, "do you deliver?") == "We deliver on Tuesdays."
    now[0] += 1.5
    assert await ask(consultant, "do you deliver?") == "We deliver on Fridays."


async def test_broken_reload_keeps_the_previous_knowledge(tmp_path):
    """If the file disappears or loses all its sections, the last good version keeps answering."""
    path = tmp_path / "knowledge.md"
    path.write_text(KNOWLEDGE_V1, encoding="utf-8")
    consultant = KnowledgeConsultant(path, reload_interval=0)
    path.write_text("no sections here\n", encoding="utf-8")
    assert await ask(consultant, "do you deliver?") == "We deliver on Tuesdays."
    path.unlink()
    assert await ask(consultant, "do you deliver?") == "We deliver on Tuesdays."


def test_missing_file_raises_value_error_naming_the_path(tmp_path):
    """A knowledge file that doesn't exist is refused at construction, naming the path."""
    missing = tmp_path / "nowhere" / "knowledge.md"
    with pytest.raises(ValueError, match="knowledge file not found") as caught:
        KnowledgeConsultant(missing)
    assert str(missing) in str(caught.value)


def test_file_without_sections_raises_value_error(tmp_path):
    """A file with no '## ' sections is refused with a hint about the format."""
    path = tmp_path / "empty.md"
    path.write_text("# Just a title\n\nSome text.\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"has no sections \(start each topic with a '## ' heading\)"):
        KnowledgeBase(path)


def test_undecodable_file_raises_value_error(tmp_path):
    """A file that isn't UTF-8 is refused, naming the path."""
    path = tmp_path / "latin1.md"
    path.write_bytes("## Caf\xe9\nOpen.\n".encode("latin-1"))
    with pytest.raises(ValueError, match="cannot read knowledge file") as caught:
        KnowledgeBase(path)
    assert str(path) in str(caught.value)


def test_parser_reads_name_sections_keywords_and_skips_comments():
    """The parser takes the '# ' name, the Language and Synonyms lines before the first section, one
    section per '## ', the keywords, and drops HTML comments."""
    parsed = parse_knowledge(
        "<!-- format notes\nLanguage: fr\n## not a section -->\n# Shop\nLanguage: DE\nintro ignored\n"
        "Synonyms: Größe, Groesse, Format\nsynonyms: alone\nSYNONYMS: zurückgeben, zurückschicken\n"
        "## First?\nKeywords: alpha, beta gamma\nAnswer one.\n\n## Empty\n\n## Second\r\nAnswer two.\r\n"
    )
    assert isinstance(parsed, KnowledgeText)
    assert parsed.name == "Shop"
    assert parsed.language == "de"
    assert parsed.synonyms == [["Größe", "Groesse", "Format"], ["zurückgeben", "zurückschicken"]]
    assert [(s.title, s.keywords, s.body) for s in parsed.sections] == [
        ("First?", ["alpha", "beta gamma"], "Answer one."),
        ("Second", [], "Answer two."),
    ]
    undeclared = parse_knowledge("## Only\nAnswer.\n")
    assert (undeclared.name, undeclared.language, undeclared.synonyms) == ("", None, [])


def test_markdown_is_rendered_as_plain_text():
    """Answers lose Markdown markup: bullets, emphasis, code and links become plain text, paragraphs stay."""
    text = markdown_to_text(
        "We have **three** _kinds_:\n- small\n- large\n  rugs\n\nSee [our page](https://example.com) or `call`."
    )
    assert text == "We have three kinds:\n• small\n• large rugs\n\nSee our page (https://example.com) or call."


def test_analyzer_stems_and_drops_stop_words():
    """Tokens are lowercase stems without stop words (the language's and a chat's), so word variants meet;
    German stems fold umlauts and ß, so "Größe" and "Groesse" are one token."""
    english = Analyzer("en")
    assert english.tokens("What are your Opening HOURS?") == ["open", "hour"]
    assert english.tokens("What's the shop's address?") == ["shop", "address"]
    assert english.tokens("hi, could you please tell me the price") == ["price"]
    assert english.tokens("changed") == english.tokens("change") == english.tokens("changing")
    for variants in (("lamp", "lamps"), ("box", "boxes"), ("delivery", "deliveries"),
                     ("ship", "shipping", "shipped", "ships"), ("close", "closes", "closed", "closing"),
                     ("cancel", "cancelled", "cancelling"), ("size", "sizes")):
        assert len({english.stem(word) for word in variants}) == 1, variants
    german = Analyzer("de-AT")
    assert german.language == "de"
    assert german.tokens("Größe") == german.tokens("Groesse") == german.tokens("Größen")
    assert german.tokens("Welche Größen haben die Teppiche?") == german.tokens("welche groessen haben die teppiche")
    assert german.tokens("Hallo, ich möchte bitte eine Lampe kaufen") == [german.stem("lampe"), german.stem("kaufen")]
    assert "und" in german.stopwords and "the" not in german.stopwords


SYNONYM_KNOWLEDGE = """# Test Shop
Synonyms: metre, meter, m
Synonyms: return, send back, bring back

## Can I return something?
You can return anything within 14 days.

## How big are the rugs?
Keywords: size
Our rugs are 2 metre long.
"""


async def test_synonyms_line_maps_a_visitors_word_onto_the_files_word(tmp_path):
    """A 'Synonyms:' line makes the visitor's words (one word or a phrase) the same token as the file's word,
    so a question using them finds the section written with the file's word."""
    path = tmp_path / "knowledge.md"
    path.write_text(SYNONYM_KNOWLEDGE, encoding="utf-8")
    parsed = parse_knowledge(SYNONYM_KNOWLEDGE)
    analyzer = Analyzer(parsed.language or "en", parsed.synonyms)
    assert analyzer.tokens("meters") == analyzer.tokens("metres") == analyzer.tokens("metre")
    assert analyzer.tokens("can I send it back?") == analyzer.tokens("return")
    assert analyzer.tokens("can I bring back the rug") == analyzer.tokens("return rug")
    assert Analyzer("en").tokens("send back") != Analyzer("en").tokens("return")  # only with the file's line
    consultant = KnowledgeConsultant(path)
    assert await ask(consultant, "can I send it back?") == "You can return anything within 14 days."
    assert await ask(consultant, "how many meters is a rug?") == "Our rugs are 2 metre long."


def test_shipped_knowledge_file_documents_its_format():
    """knowledge.md starts with an HTML comment explaining the format, and has 15-20 sections."""
    text = KNOWLEDGE.read_text(encoding="utf-8")
    assert text.startswith("<!--")
    header = text[: text.index("-->")]
    for phrase in ("## ", "Keywords:", "heading"):
        assert phrase in header
    parsed = parse_knowledge(text)
    assert parsed.name == "Lantern & Loom"
    assert parsed.language in (None, "en")
    assert 15 <= len(parsed.sections) <= 20


def test_shipped_german_file_is_the_main_files_translation():
    """knowledge.de.md is German (by its name, and its Language line if any) and has the main file's topics."""
    german = parse_knowledge(KNOWLEDGE_DE.read_text(encoding="utf-8"))
    assert german.language in (None, "de")
    assert german.name == "Lantern & Loom"
    assert len(german.sections) == len(parse_knowledge(KNOWLEDGE.read_text(encoding="utf-8")).sections)
    knowledge = Knowledge(KNOWLEDGE)
    assert sorted(knowledge.files) == ["de", "en"]
    assert knowledge.for_language("de").path == KNOWLEDGE_DE


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200), st.sampled_from([None, "en", "de", "de-AT", "fr"]))
def test_any_text_gets_a_non_empty_answer(text, lang):
    """Whatever a visitor types, in whatever language, the consultant answers with some text and never crashes."""
    consultant = _shared_consultant()
    reply = consultant.answer(text, lang)
    assert isinstance(reply, str) and reply.strip()


_SHARED = []


def _shared_consultant():
    if not _SHARED:
        _SHARED.append(KnowledgeConsultant(KNOWLEDGE, contact=CONTACT))
    return _SHARED[0]


# -- languages -----------------------------------------------------------------------------------

GERMAN_HOURS = "Unser Laden ist von Montag bis Samstag von 9:00 bis 18:00 Uhr geöffnet"


@pytest.mark.parametrize("lang", ["de", "de-AT", "DE-at"])
async def test_german_visitors_get_german_answers_and_small_talk(consultant, lang):
    """For a German widget (de, and de-AT falling back to de) answers come from knowledge.de.md, and the
    greeting, thanks and 'I don't know' (with the contacts) are German too."""
    assert GERMAN_HOURS in await ask(consultant, "Wann habt ihr geöffnet?", lang)
    assert "Wir liefern in alle EU-Länder" in await ask(consultant, "Liefert ihr auch nach Österreich?", lang)
    assert await ask(consultant, "Hallo", lang) == "Hallo und herzlich willkommen bei Lantern & Loom! Wie kann ich Ihnen helfen?"
    reply = await ask(consultant, "Guten Tag, wann habt ihr geöffnet?", lang)
    assert reply.startswith("Hallo! ") and GERMAN_HOURS in reply
    assert await ask(consultant, "Danke!", lang) == "Gern geschehen! Kann ich sonst noch etwas für Sie tun?"
    assert await ask(consultant, "Vielen Dank, tschüss", lang) == "Gern geschehen! Auf Wiedersehen und einen schönen Tag!"
    assert await ask(consultant, "Wer hat die Fußball-WM gewonnen?", lang) == (
        "Das weiß ich leider nicht. Unser Team hilft Ihnen gern weiter: "
        "schreiben Sie an hello@lantern-loom.example oder rufen Sie +1 555 0100 an.")


@pytest.mark.parametrize("lang", [None, "en", "en-GB", "fr", "fr-BE"])
async def test_other_languages_get_the_english_main_file(consultant, lang):
    """A widget in a language without its own file (or without lang) gets the main file's English answers."""
    assert "Monday to Saturday, 9:00 to 18:00" in await ask(consultant, "when are you open?", lang)
    assert await ask(consultant, "hi", lang) == "Hello, and welcome to Lantern & Loom! How can I help you today?"
    assert await ask(consultant, "thanks!", lang) == "You're welcome! Is there anything else I can help you with?"
    reply = await ask(consultant, "Wann habt ihr geöffnet?", lang)
    assert "geöffnet" not in reply and "Das weiß ich" not in reply


def test_for_language_picks_the_file_of_the_language():
    """Knowledge.for_language: de and de-AT give knowledge.de.md; anything else, or nothing, the main file."""
    knowledge = Knowledge(KNOWLEDGE)
    assert knowledge.for_language("de").path == knowledge.for_language("de-AT").path == KNOWLEDGE_DE
    assert knowledge.for_language("de").language == "de"
    for lang in (None, "", "en", "fr", "nl-BE"):
        assert knowledge.for_language(lang) is knowledge.main
    assert knowledge.main.language == "en"


GERMAN_V1 = """# Test-Laden

## Wann haben Sie geöffnet?
Keywords: Öffnungszeiten
Wir haben werktags von 8 bis 17 Uhr geöffnet.
"""


@pytest.mark.parametrize("files, culprit", [
    ({"knowledge.de.md": "Language: fr\n" + GERMAN_V1}, "knowledge.de.md"),
    ({"knowledge.de.md": GERMAN_V1.replace("# Test-Laden", "# Test-Laden\nLanguage: 123")}, "knowledge.de.md"),
    ({"knowledge.md": "Language: de\n" + KNOWLEDGE_V1, "knowledge.de.md": GERMAN_V1}, "knowledge.de.md"),
    ({"knowledge.md": "Language: english!\n" + KNOWLEDGE_V1}, "knowledge.md"),
])
async def test_a_bad_set_of_files_is_refused_naming_the_file(tmp_path, files, culprit):
    """A sibling whose Language line disagrees with its name, a bad Language tag, or two files of one
    language: ValueError naming the file; build() (knowledge or openai) turns it into a ConfigError."""
    (tmp_path / "knowledge.md").write_text(KNOWLEDGE_V1, encoding="utf-8")
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as caught:
        Knowledge(tmp_path / "knowledge.md")
    assert str(tmp_path / culprit) in str(caught.value)
    with pytest.raises(ConfigError, match="knowledge_path") as caught:
        build(Config(root=tmp_path))
    assert str(tmp_path / culprit) in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        build(Config(consultant="openai", openai_base_url="http://127.0.0.1:9/v1", openai_model="m",
                     knowledge_path=str(tmp_path / "knowledge.md")))
    assert str(tmp_path / culprit) in str(caught.value)


async def test_sibling_files_are_found_beside_any_main_file(tmp_path):
    """A main file named shop.md has shop.de.md as its German file; a matching Language line is accepted."""
    (tmp_path / "shop.md").write_text(KNOWLEDGE_V1, encoding="utf-8")
    (tmp_path / "shop.de.md").write_text("Language: de\n" + GERMAN_V1, encoding="utf-8")
    (tmp_path / "knowledge.de.md").write_text("not a sibling of shop.md\n", encoding="utf-8")
    consultant = KnowledgeConsultant(tmp_path / "shop.md")
    assert await ask(consultant, "Was sind Ihre Öffnungszeiten?", "de-CH") == "Wir haben werktags von 8 bis 17 Uhr geöffnet."
    assert (await ask(consultant, "what are your opening times?", "de-CH")).startswith("Das weiß ich leider nicht.")
    assert await ask(consultant, "what are your opening times?") == "We are open on weekdays from 8 to 5."


async def test_file_names_that_are_not_languages_are_left_alone_and_regional_files_answer_their_language(tmp_path):
    """knowledge.old.md (a backup) is no language: the server starts and ignores it. knowledge.de-at.md,
    the only German file, answers "de" too. A main file named knowledge.de.md is German."""
    (tmp_path / "knowledge.md").write_text(KNOWLEDGE_V1, encoding="utf-8")
    (tmp_path / "knowledge.old.md").write_text("an old backup without sections\n", encoding="utf-8")
    (tmp_path / "knowledge.de-at.md").write_text(GERMAN_V1, encoding="utf-8")
    consultant = KnowledgeConsultant(tmp_path / "knowledge.md")
    for lang in ("de", "de-AT", "de-CH"):
        assert await ask(consultant, "Was sind Ihre Öffnungszeiten?", lang) == "Wir haben werktags von 8 bis 17 Uhr geöffnet."
    german_main = tmp_path / "only" / "knowledge.de.md"
    german_main.parent.mkdir()
    german_main.write_text(GERMAN_V1, encoding="utf-8")
    assert await ask(KnowledgeConsultant(german_main), "Was sind Ihre Öffnungszeiten?") == "Wir haben werktags von 8 bis 17 Uhr geöffnet."


def test_a_file_of_stop_words_only_is_refused_naming_it(tmp_path):
    path = tmp_path / "knowledge.md"
    path.write_text("## What?\nIt is what it is.\n", encoding="utf-8")
    with pytest.raises(ValueError, match="knowledge.md: it has no words to search"):
        KnowledgeBase(path)


@pytest.mark.parametrize("question", [
    "when are you open?".replace("o", "\uff4f"),             # full-width letters
    "Wann habt ihr geöffnet?".replace("ö", "o\u0308"),       # ö typed as o + a combining mark
])
async def test_letters_typed_another_way_are_the_same_letters(consultant, question):
    lang = "de" if "Wann" in question else "en"
    reply = await ask(consultant, question, lang)
    assert "9:00" in reply and "know" not in reply and "weiß ich" not in reply


@pytest.mark.timeout(10)
@pytest.mark.parametrize("lang", ["en", "de"])
def test_one_enormous_word_is_answered_at_once(lang):
    """Compounds are looked for in words of up to 40 letters: trying every cut of a 64,000-letter "word"
    took minutes of the server's only thread (the cost grows with the square of the length)."""
    reply = _shared_consultant().answer("ä" * 64_000, lang)
    assert "know" in reply or "weiß ich" in reply


# -- registry ------------------------------------------------------------------------------------


async def test_build_makes_the_knowledge_consultant_by_default():
    """build(Config()) gives the knowledge consultant on the shipped file, with the configured contacts."""
    consultant = build(Config(contact_email=CONTACT["email"], contact_phone=CONTACT["phone"]))
    assert isinstance(consultant, KnowledgeConsultant)
    assert consultant.name == "knowledge"
    assert consultant.knowledge.main.path == KNOWLEDGE
    assert "within 2 to 4 working days" in await ask(consultant, "how fast is delivery?")
    assert_unknown(await ask(consultant, "can you fix my car?"))


async def test_build_looks_for_the_default_knowledge_file_in_the_root(tmp_path):
    """Without knowledge_path, the knowledge file is knowledge.md in config.root."""
    (tmp_path / "knowledge.md").write_text(KNOWLEDGE_V1, encoding="utf-8")
    consultant = build(Config(root=tmp_path))
    assert await ask(consultant, "do you deliver?") == "We deliver on Tuesdays."


async def test_build_opens_a_relative_knowledge_path_from_the_current_directory(tmp_path, monkeypatch):
    """A relative knowledge_path is read from the current directory, like a path typed on the command line."""
    (tmp_path / "shop.md").write_text(KNOWLEDGE_V1, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    consultant = build(Config(knowledge_path="shop.md"))
    assert await ask(consultant, "do you deliver?") == "We deliver on Tuesdays."


def test_build_knowledge_path_and_helpdesk(tmp_path):
    """A missing knowledge_path is a ConfigError naming the file and the setting; helpdesk is still offered."""
    with pytest.raises(ConfigError, match="nope.md") as caught:
        build(Config(knowledge_path=str(tmp_path / "nope.md")))
    assert "knowledge_path (--knowledge-path or CHAT_WIDGET_KNOWLEDGE_PATH)" in str(caught.value)
    assert isinstance(build(Config(consultant="HelpDesk")), HelpDeskConsultant)
