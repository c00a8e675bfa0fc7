"""``build(config)``: the consultant the server uses, made from the validated :class:`~server.config.Config`.

This is the one place that turns settings into a consultant. ``config.consultant`` is already one of
:data:`server.config.CONSULTANTS`; here each name gets its class and defaults:

* ``knowledge``: the file ``config.knowledge_path``, else ``config.root / "knowledge.md"``; ranked by
  ``config.ranker`` (``semantic``: the model is loaded here, so a broken install stops the start with
  a message naming the setting; its example vectors are cached in ``config.asset_cache``).
* ``openai``: needs ``openai_base_url`` (an http(s) URL) and ``openai_model``; the key is
  ``config.openai_api_key`` (empty: no Authorization header, for local servers). A ``knowledge_path``
  is optional here: when set, the best-matching sections of that file (or of its
  ``knowledge.<lang>.md`` sibling in the visitor's language) ground each reply.
* ``helpdesk``: no settings.

A relative ``knowledge_path`` is opened from the current directory, as a path typed on the command
line would be. Missing or invalid settings raise :class:`~server.config.ConfigError` naming the setting
and how to give it. Options that are not settings (timeouts, a clock) are for tests, which construct
the classes directly.
"""

from ..config import ConfigError, setting_hint
from .helpdesk import HelpDeskConsultant
from .knowledge import Knowledge, KnowledgeConsultant
from .openai import OpenAIConsultant
from .semantic import SemanticUnavailable, shared_embedder

DEFAULT_KNOWLEDGE_FILE = "knowledge.md"  # in config.root


def build(config):
    """The consultant named by ``config.consultant``, or ``ConfigError`` naming the setting that stops it."""
    return _MAKERS[config.consultant](config)


def _knowledge(config):
    path = config.knowledge_path or config.root / DEFAULT_KNOWLEDGE_FILE
    embedder = None
    if config.ranker == "semantic":
        embedder = shared_embedder(config.asset_cache)
        try:
            embedder.check()
        except SemanticUnavailable as error:
            raise ConfigError(f"ranker: {error}; or set {setting_hint('ranker')} to words") from None
    try:
        return KnowledgeConsultant(path, contact=config.contact, embedder=embedder)
    except ValueError as error:
        raise _knowledge_file_error(error) from None


def _openai(config):
    for name in ("openai_base_url", "openai_model"):
        if not getattr(config, name):
            raise ConfigError(f"consultant: consultant openai needs {setting_hint(name)}")
    if not config.openai_base_url.startswith(("http://", "https://")):
        raise ConfigError(
            "consultant: openai_base_url must be an http(s) URL such as http://127.0.0.1:11434/v1, "
            f"got {config.openai_base_url!r}"
        )
    knowledge = None
    if config.knowledge_path:
        try:
            knowledge = Knowledge(config.knowledge_path)
        except ValueError as error:
            raise _knowledge_file_error(error) from None
    return OpenAIConsultant(
        base_url=config.openai_base_url,
        model=config.openai_model,
        api_key=config.openai_api_key,
        system_prompt=config.system_prompt or None,
        knowledge=knowledge,
        contact=config.contact,
    )


def _helpdesk(config):
    return HelpDeskConsultant()


def _knowledge_file_error(error):
    """A knowledge file that is missing, unreadable, has no sections, or declares the wrong language (the
    message names the file)."""
    return ConfigError(f"consultant: {error}; check {setting_hint('knowledge_path')}")


# One maker per name in server.config.CONSULTANTS (tests build every name listed there).
_MAKERS = {"knowledge": _knowledge, "openai": _openai, "helpdesk": _helpdesk}
