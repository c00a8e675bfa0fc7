"""The ``helpdesk`` consultant: fixed answers about the demo shop from keyword rules; needs no files or network."""

import re

from .base import Consultant


class HelpDeskConsultant(Consultant):
    """Answers common questions about the demo shop from keyword rules; the first rule that matches wins."""

    name = "helpdesk"

    RULES = (
        (r"\b(hi|hello|hey|good (morning|afternoon|evening))\b",
         "Hello! I'm the Lantern & Loom consultant. Ask me about opening hours, delivery, returns or prices."),
        (r"\b(thanks|thank you|cheers)\b", "You're welcome! Anything else I can help with?"),
        (r"\b(hour|open|opening|close|closing)\b",
         "Our shop is open Monday to Saturday, 9:00 to 18:00. Online orders are taken around the clock."),
        (r"\b(deliver|delivery|shipping|ship)\b",
         "We deliver within 2 to 4 working days; delivery is free on orders over 50 euros."),
        (r"\b(return|refund|exchange)\b",
         "You can return any item within 30 days for a full refund; just keep the receipt."),
        (r"\b(price|cost|how much|expensive|cheap)\b",
         "Our lamps start at 39 euros and our hand-woven rugs at 120 euros."),
        (r"\b(contact|email|phone|call|human|person)\b",
         "You can reach our team at hello@lantern-loom.example or +1 555 0100 during opening hours."),
    )

    def __init__(self):
        self._rules = [(re.compile(pattern, re.IGNORECASE), answer) for pattern, answer in self.RULES]

    async def reply(self, history, lang=None):
        # English only: the demo rules have no other language.
        question = history[-1]["text"] if history else ""
        for pattern, answer in self._rules:
            if pattern.search(question):
                yield answer
                return
        yield ("I'm not sure about that one. I can help with opening hours, delivery, returns and prices, "
               "or put you in touch with our team.")
