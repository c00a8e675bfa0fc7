"""Consultants: who answers the visitors. ``build(config)`` makes the one the settings name.

* ``knowledge`` (default): answers from Markdown knowledge files (one per language) with BM25
  retrieval, offline (:mod:`.knowledge`).
* ``openai``: any OpenAI-compatible chat-completions endpoint, streamed (:mod:`.openai`).
* ``helpdesk``: built-in keyword rules for the demo shop (:mod:`.helpdesk`).

Each is a :class:`Consultant` whose ``reply(history, lang=None)`` yields text chunks; a reply that fails raises a
:class:`ConsultantError` subclass (:mod:`.base`). Names and defaults are decided in :mod:`.registry`.
"""

from .base import (
    AuthenticationFailed,
    Consultant,
    ConsultantError,
    ConsultantTimeout,
    RateLimited,
    ReplyCutOff,
    UpstreamError,
)
from .helpdesk import HelpDeskConsultant
from .knowledge import Knowledge, KnowledgeBase, KnowledgeConsultant
from .openai import OpenAIConsultant
from .registry import build

__all__ = [
    "build",
    "Consultant",
    "HelpDeskConsultant",
    "Knowledge",
    "KnowledgeBase",
    "KnowledgeConsultant",
    "OpenAIConsultant",
    "ConsultantError",
    "AuthenticationFailed",
    "RateLimited",
    "UpstreamError",
    "ConsultantTimeout",
    "ReplyCutOff",
]
