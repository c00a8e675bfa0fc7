"""What the knowledge consultant says around the answers, per language: greetings, thanks, goodbyes,
"I don't know" with the team's contacts, and how it recognises the small talk in a visitor's message
(and which of its sentences ask something).

One :class:`SmallTalk` per language in :data:`LANGUAGES`; :func:`for_language` falls back to English
(the consultant speaks the language of the knowledge file it answers from, so an answer and the words
around it never mix languages).
"""

import re

from ..languages import base_language

_END = r"[\s,.!?;:-]*"


class SmallTalk:
    def __init__(self, greeting, thanks, farewell, asking, words):
        self.greeting = re.compile(r"^\W*(?:" + greeting + r")\b" + _END, re.IGNORECASE)
        self._asking = re.compile(r"\W*(?:" + asking + r")\b", re.IGNORECASE)
        self.thanks = re.compile(r"\b(?:" + thanks + r")\b" + _END, re.IGNORECASE)
        self.farewell = re.compile(r"\b(?:" + farewell + r")\b" + _END, re.IGNORECASE)
        self.words = words

    def asks(self, sentence):
        """Whether ``sentence`` asks something: it begins with a question word or a verb that opens a
        question ("when", "can", "do you"; German "wann", "kann", "habt")."""
        return bool(self._asking.match(sentence))

    def welcome(self, name):
        return self.words["welcome_named" if name else "welcome"].format(name=name)

    def contact_sentence(self, contact):
        """The team's contacts as one sentence (``contact``: email, phone, url; empty ones left out)."""
        ways = [self.words[kind].format(contact[kind]) for kind in ("email", "phone", "url") if contact.get(kind)]
        if not ways:
            return self.words["no_contact"]
        listed = ways[0] if len(ways) == 1 else ", ".join(ways[:-1]) + self.words["or"] + ways[-1]
        return self.words["contact"].format(listed)

    def unknown(self, contact):
        return self.words["unknown"] + " " + self.contact_sentence(contact)


LANGUAGES = {
    "en": SmallTalk(
        greeting=r"hi|hello|hey|hiya|howdy|greetings|good\s+(?:morning|afternoon|evening|day)(?:\s+there)?",
        thanks=r"(?:thank\s*(?:you|u)|thanks|thx|cheers|much\s+appreciated|appreciate\s+it)"
               r"(?:\s+(?:so|very)\s+much|\s+a\s+lot|\s+a\s+bunch)?",
        farewell=r"good\s*bye|bye(?:\s*bye)?|see\s+you(?:\s+(?:later|soon))?"
                 r"|have\s+a\s+(?:nice|good|great|lovely)\s+(?:day|evening|weekend)",
        asking=r"what|whats|when|where|wheres|how|which|who|can|could|do|does|is|are|will|would",
        words={
            "welcome": "Hello, and welcome! How can I help you today?",
            "welcome_named": "Hello, and welcome to {name}! How can I help you today?",
            "hello": "Hello! ",
            "thanks": "You're welcome! Is there anything else I can help you with?",
            "welcome_back": "You're welcome! ",
            "goodbye": "Goodbye, and have a lovely day!",
            "vague": "How can I help you? Ask me anything about our shop, products, orders or delivery.",
            "unknown": "I'm sorry, I don't know the answer to that.",
            "contact": "Our team will be glad to help: you can {}.",
            "no_contact": "Please get in touch with our team directly; they will be glad to help.",
            "email": "email {}", "phone": "call {}", "url": "visit {}", "or": " or ",
        },
    ),
    "de": SmallTalk(
        greeting=r"hallo|hi|hey|moin|servus|grüß\s*gott|grüezi|guten\s+(?:morgen|tag|abend)",
        thanks=r"(?:vielen\s+dank|danke(?:\s*schön|\s+sehr)?|dankeschön|merci)",
        farewell=r"tschüss|tschüs|tschau|auf\s+wiedersehen|bis\s+(?:bald|dann|später)"
                 r"|schönen\s+(?:tag|abend|sonntag)(?:\s+noch)?",
        asking=r"wann|wie|was|wo|wer|welche\w*|kann|könnt|koennt|habt|gibt|gibts|ist|sind",
        words={
            "welcome": "Hallo und herzlich willkommen! Wie kann ich Ihnen helfen?",
            "welcome_named": "Hallo und herzlich willkommen bei {name}! Wie kann ich Ihnen helfen?",
            "hello": "Hallo! ",
            "thanks": "Gern geschehen! Kann ich sonst noch etwas für Sie tun?",
            "welcome_back": "Gern geschehen! ",
            "goodbye": "Auf Wiedersehen und einen schönen Tag!",
            "vague": "Wie kann ich Ihnen helfen? Fragen Sie mich gern zu unserem Laden, unseren Produkten, "
                     "Bestellungen oder zur Lieferung.",
            "unknown": "Das weiß ich leider nicht.",
            "contact": "Unser Team hilft Ihnen gern weiter: {}.",
            "no_contact": "Bitte wenden Sie sich direkt an unser Team; es hilft Ihnen gern weiter.",
            "email": "schreiben Sie an {}", "phone": "rufen Sie {} an", "url": "besuchen Sie {}", "or": " oder ",
        },
    ),
}


def for_language(tag):
    """The small talk of a language tag (``de-AT``: German), else English."""
    return LANGUAGES.get(base_language(tag), LANGUAGES["en"])
