"""The registry of consultants: ``make_consultant(name, **options)`` builds the one the server uses.

Names:

* ``knowledge`` (default): answers from a Markdown knowledge file, offline (:mod:`server.knowledge`).
* ``openai``: any OpenAI-compatible chat-completions endpoint, streamed (:mod:`server.openai_consultant`).
* ``helpdesk``: the built-in keyword rules of :class:`server.consultant.HelpDeskConsultant`.

Errors a consultant raises while replying are :class:`ConsultantError` subclasses, with messages fit for
the server log (they never contain an API key).
"""

import os
from pathlib import Path

from .consultant import HelpDeskConsultant

NAMES = ("knowledge", "openai", "helpdesk")
DEFAULT_NAME = "knowledge"
DEFAULT_KNOWLEDGE_PATH = Path(__file__).resolve().parent.parent / "knowledge.md"
API_KEY_VARIABLES = ("CHAT_WIDGET_OPENAI_API_KEY", "OPENAI_API_KEY")


class ConsultantError(Exception):
    """A consultant could not produce (all of) its reply; the message says why, without secrets."""


class AuthenticationFailed(ConsultantError):
    """The model server refused the credentials (HTTP 401/403)."""


class RateLimited(ConsultantError):
    """The model server asked us to slow down (HTTP 429) for longer than we are willing to wait."""


class UpstreamError(ConsultantError):
    """The model server failed (5xx), refused the request (other 4xx), sent garbage or could not be reached."""


class ConsultantTimeout(ConsultantError):
    """The first token, or the whole reply, took longer than allowed."""


class ReplyCutOff(ConsultantError):
    """The reply stream ended before it was complete; what arrived before was already yielded."""


def _setting_hint(option):
    flag = "--" + option.replace("_", "-")
    return f"{option} ({flag} or CHAT_WIDGET_{option.upper()})"


def make_consultant(
    name=None,
    knowledge_path=None,
    contact=None,
    openai_base_url=None,
    openai_model=None,
    openai_api_key=None,
    system_prompt=None,
    openai_first_token_timeout=None,
    openai_total_timeout=None,
):
    """Build the consultant called ``name`` (``None``/empty means ``knowledge``).

    * ``knowledge_path``: the knowledge file; the ``knowledge`` consultant defaults to the repository's
      ``knowledge.md``. For ``openai`` it is optional: when given, the best-matching sections ground
      each reply (put into the system message).
    * ``contact``: ``{"email", "phone", "url"}`` offered when the knowledge consultant doesn't know (and
      given to the ``openai`` model to suggest).
    * ``openai_base_url``, ``openai_model``: required for ``openai``.
    * ``openai_api_key``: defaults to ``$CHAT_WIDGET_OPENAI_API_KEY``, then ``$OPENAI_API_KEY``; may be
      empty for local servers (then no Authorization header is sent).
    * ``system_prompt``: replaces the ``openai`` consultant's default instructions.

    Raises ``ValueError`` naming the setting for an unknown name or a missing/invalid option.
    """
    chosen = (name or DEFAULT_NAME).strip().lower()
    if chosen == "knowledge":
        from .knowledge import KnowledgeConsultant

        return KnowledgeConsultant(knowledge_path or DEFAULT_KNOWLEDGE_PATH, contact=contact)
    if chosen == "openai":
        from .knowledge import KnowledgeBase
        from .openai_consultant import OpenAIConsultant

        if not openai_base_url:
            raise ValueError(f"consultant openai needs {_setting_hint('openai_base_url')}")
        if not str(openai_base_url).startswith(("http://", "https://")):
            raise ValueError(
                f"openai_base_url must be an http(s) URL such as http://127.0.0.1:11434/v1, got {openai_base_url!r}"
            )
        if not openai_model:
            raise ValueError(f"consultant openai needs {_setting_hint('openai_model')}")
        if openai_api_key is None:
            openai_api_key = next((os.environ[var] for var in API_KEY_VARIABLES if os.environ.get(var)), "")
        timeouts = {}
        if openai_first_token_timeout is not None:
            timeouts["first_token_timeout"] = float(openai_first_token_timeout)
        if openai_total_timeout is not None:
            timeouts["total_timeout"] = float(openai_total_timeout)
        knowledge = KnowledgeBase(knowledge_path) if knowledge_path else None
        return OpenAIConsultant(
            base_url=openai_base_url,
            model=openai_model,
            api_key=openai_api_key,
            system_prompt=system_prompt,
            knowledge=knowledge,
            contact=contact,
            **timeouts,
        )
    if chosen == "helpdesk":
        return HelpDeskConsultant()
    raise ValueError(f"consultant must be one of {', '.join(NAMES)}, got {name!r}")
