"""All server settings in one validated place.

``SETTINGS`` is the one table of settings: name, default, the command-line option (if any) and its
help. Every setting can also be given as the environment variable ``CHAT_WIDGET_<NAME>``;
``Config.from_environment`` reads them (command-line values win), ``Config(**values)`` checks them
once and refuses bad values with a message that names the setting and the fix. A ``Config`` is
never changed after it is made.
"""

import ipaddress
import os
import re
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

from protocol import ratelimit

from . import languages
from .transport.origins import OriginError, OriginRule

RUNTIMES = ("micropython", "pyodide")
CONSULTANTS = ("knowledge", "openai", "helpdesk")
RANKERS = ("semantic", "words")  # server/consultants/semantic.py, retrieval.py
LOG_LEVELS = ("debug", "info", "warning", "error")
PYTHON_DELIVERIES = ("bundle", "files")
GC_POLICIES = ("freeze", "python")  # server/gcpolicy.py
FAULTS = ("drop_ack_once", "stall_ack_once", "reply_delay", "poll_timeout")
HTTP_FALLBACKS = ("auto", "off", "always")
MAX_HEARTBEAT = 5  # seconds: widgets ping after 6 s without a frame (widget/core/settings.py, beat_margin)
ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "CHAT_WIDGET_"


def _version():
    try:
        return metadata.version("chat-widget")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"


VERSION = _version()


class Setting:
    """One setting: its default, and its command-line option (``cli``: None for environment only)."""

    def __init__(self, name, default, help, cli=True, kind="value"):
        self.name = name
        self.default = default
        self.help = help
        self.kind = kind  # "value", "flag", or "multiple" (repeatable option; space-separated in the environment)
        self.option = "--" + name.replace("_", "-") if cli else None
        self.env = ENV_PREFIX + name.upper()


SETTINGS = (
    Setting("host", "127.0.0.1", "Interface to listen on."),
    Setting("port", 8000, "Port to listen on (0 picks a free one)."),
    Setting("allow_origins", (), "A site allowed to use the chat (repeatable; environment: space-separated). "
            "Default: only this server's own origin.", kind="multiple"),
    Setting("trusted_proxies", (), "A reverse proxy (address or network, repeatable; environment: space-separated) "
            "whose X-Forwarded-For names the visitor's address. Default: none, every peer is the visitor.",
            kind="multiple"),
    Setting("metrics_allow", (), "An address or network (repeatable; environment: space-separated) that may read "
            "/metrics. Default: none, /metrics answers 403.", kind="multiple"),
    Setting("allow_missing_origin", False, "Accept socket handshakes without an Origin header (non-browser clients).",
            kind="flag"),
    Setting("runtime", "micropython", f"Python runtime for the widget: {' or '.join(RUNTIMES)}."),
    Setting("log_level", "info", f"One of {', '.join(LOG_LEVELS)}."),
    Setting("store", "var/chat.sqlite3", "Where conversations are kept: an SQLite file (relative to the project), "
            "'memory', or redis://HOST:PORT/DB (rediss:// for TLS), shared by several instances."),
    Setting("workers", 1, "Server processes sharing the port, one per core; more than one needs a redis:// store."),
    Setting("retention", 1800, "Seconds a quiet conversation is kept and can be resumed."),
    Setting("sweep_interval", 60, "Seconds between sweeps of expired conversations.", cli=False),
    Setting("consultant", "knowledge", "Who answers: knowledge (offline, from --knowledge-path), "
            "openai (any OpenAI-compatible API), helpdesk."),
    Setting("ranker", "semantic", "How the knowledge consultant finds the section: semantic (meaning and words: "
            "a multilingual model, 14-22 ms of CPU per new question) or words (BM25 alone, under 1 ms; answers fewer "
            "questions, see docs/consultant.md)."),
    Setting("knowledge_path", "", "Markdown knowledge file (default: the demo's knowledge.md); "
            "knowledge.<lang>.md files beside it answer visitors in that language."),
    Setting("openai_base_url", "", "e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1; "
            "key from CHAT_WIDGET_OPENAI_API_KEY."),
    Setting("openai_model", "", "Model name for --consultant openai."),
    Setting("system_prompt", "", "Overrides the default consultant prompt."),
    Setting("socket_url", "", "Public ws(s):// URL of the socket, when it is not /ws on the page's host "
            "(e.g. behind a proxy)."),
    Setting("http_fallback", "auto", "HTTP long-polling when WebSockets fail: auto (fall back when they fail), "
            "off (never), always (use HTTP from the start, for sites behind proxies that break WebSockets)."),
    Setting("http_upgrade_interval", 120, "Seconds between the widget's tries to move from the HTTP fallback "
            "back to WebSocket (and when the browser comes back online).", cli=False),
    Setting("contact_email", "", "Shown when chat is unavailable."),
    Setting("contact_phone", "", "Shown when chat is unavailable."),
    Setting("contact_url", "", "A contact page, shown when chat is unavailable."),
    Setting("catalogues", "", "A folder of <lang>.json word catalogues that add or replace the widget's languages "
            "(keys of widget/lang/en.json; docs/embedding.md)."),
    # Limits (docs/security.md); environment only.
    Setting("max_message_bytes", 16 * 1024, "Largest frame accepted; larger ones close the socket with 1009.", cli=False),
    Setting("max_connections", 10_000, "Open sockets per process; beyond, new ones are closed with 1013.", cli=False),
    # Above a minute: a hidden tab's timers (the widget's pings) may be throttled to once a minute.
    Setting("idle_timeout", 300, "Seconds without any frame from the client before closing with 1001.", cli=False),
    # At most 5: a widget pings when nothing arrived for 6 s (its dead-connection detection needs a frame by then).
    Setting("heartbeat", 5, "Seconds between the server's beats to each WebSocket, 1 to 5 (widgets then ping only "
            "when beats are late, or every idle_timeout / 3); 0: no beats, widgets ping every 4 s.", cli=False),
    Setting("max_connections_per_address", 20, "Open sockets per IPv4 address or IPv6 /64; beyond: HTTP 429.",
            cli=False),
    Setting("message_rate", ratelimit.MESSAGES, "Visitor messages per message_period seconds, sustained.", cli=False),
    Setting("message_period", ratelimit.PER, "Seconds of message_rate.", cli=False),
    Setting("message_burst", ratelimit.BURST, "Visitor messages accepted at once after a quiet spell.", cli=False),
    Setting("history_limit", 500, "Entries kept per conversation.", cli=False),
    Setting("reply_lease", 10, "Seconds an instance holds a question it answers without renewing; when it dies "
            "mid-reply, another instance answers after this long (a redis:// store).", cli=False),
    # Budgets (docs/security.md): per address across all its connections, per conversation, per store.
    Setting("address_messages_per_minute", 30, "Visitor messages per minute from one address, all its "
            "connections together; beyond: rate_limited.", cli=False),
    Setting("address_bytes_per_minute", 64 * 1024, "Bytes of visitor messages per minute from one address; "
            "beyond: rate_limited.", cli=False),
    Setting("address_conversations_per_hour", 60, "New conversations per hour from one address; beyond, "
            "a new one is closed with 4202 (the widget tries later).", cli=False),
    Setting("address_replies_per_minute", 20, "Consultant replies per minute for one address; beyond, a short "
            "'please wait' answer stands in.", cli=False),
    Setting("address_waiting_replies", 4, "Consultant replies of one address waiting behind the one in progress "
            "(one at a time per address); beyond, the short answer stands in.", cli=False),
    Setting("conversation_max_bytes", 512 * 1024, "Bytes one conversation may hold (messages and replies); "
            "beyond, a message gets conversation_full and the widget starts a new one.", cli=False),
    Setting("store_max_bytes", 1 << 30, "The store's budget in bytes; at it new conversations are closed "
            "with 4201 (the widget tries later) and existing ones go on.", cli=False),
    Setting("store_warn_percent", 80, "Percent of store_max_bytes at which /healthz warns.", cli=False),
    # Operations; environment only.
    Setting("openai_api_key", "", "API key for --consultant openai (or OPENAI_API_KEY); empty for local servers.",
            cli=False),
    Setting("asset_cache", "var/compressed", "Folder for derived files: compressed copies of runtime files, and the "
            "knowledge consultant's example vectors.", cli=False),
    Setting("pyodide_snapshot", False, "Experiment: with --runtime pyodide, Pyodide starts from a memory snapshot "
            "made by node at start (server/assets/snapshot.py; 4.2 MB more brotli, seconds less CPU).", cli=False,
            kind="flag"),
    Setting("python_delivery", "bundle", "How the widget's Python is sent: one bundle, or files (one request each; "
            "for comparison).", cli=False),
    Setting("faults", "", "Fault injection for the tests (server/testing/faults.py); off by default.", cli=False),
    # freeze by default since it passes the churn soak (docs/performance.md, 2026-12-01): CPython's own
    # collector pauses about 800 ms every 20 s at 10,000 sockets.
    Setting("gc", "freeze", "Garbage-collection policy (server/gcpolicy.py): freeze (a short full collection "
            "four times a second, long-lived objects frozen) or python (CPython's defaults).", cli=False),
    Setting("root", ROOT, "Where index.html, widget/, protocol/ and node_modules/ live.", cli=False),
)
DEFAULTS = {setting.name: setting.default for setting in SETTINGS}


class ConfigError(ValueError):
    """A setting is invalid; the message names the setting and how to fix it."""


class Config:
    """Validated server settings. Unknown keyword arguments are refused; None means the default."""

    def __init__(self, **settings):
        unknown = set(settings) - set(DEFAULTS)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values = dict(DEFAULTS)
        values.update({key: value for key, value in settings.items() if value is not None})
        self.host = str(values["host"])
        self.port = _int_setting("port", values["port"], 0, 65535)
        self.allow_origins = _origins_setting(values["allow_origins"])
        self.allow_missing_origin = _bool_setting("allow_missing_origin", values["allow_missing_origin"])
        self.trusted_proxies = _networks_setting("trusted_proxies", values["trusted_proxies"])
        self.metrics_allow = _networks_setting("metrics_allow", values["metrics_allow"])
        self.runtime = _choice_setting("runtime", values["runtime"], RUNTIMES)
        self.log_level = _choice_setting("log_level", values["log_level"], LOG_LEVELS)
        self.max_message_bytes = _int_setting("max_message_bytes", values["max_message_bytes"], 256, 1 << 20)
        self.max_connections = _int_setting("max_connections", values["max_connections"], 1, 1_000_000)
        self.idle_timeout = _int_setting("idle_timeout", values["idle_timeout"], 65, 86400)
        self.heartbeat = _int_setting("heartbeat", values["heartbeat"], 0, MAX_HEARTBEAT)
        self.max_connections_per_address = _int_setting(
            "max_connections_per_address", values["max_connections_per_address"], 1, 1_000_000)
        self.message_rate = _int_setting("message_rate", values["message_rate"], 1, 100_000)
        self.message_period = _int_setting("message_period", values["message_period"], 1, 3600)
        self.message_burst = _int_setting("message_burst", values["message_burst"], 1, 100_000)
        self.store = _store_setting(values["store"])
        self.workers = _int_setting("workers", values["workers"], 1, 256)
        if self.workers > 1 and self.store_kind != "redis":
            raise ConfigError(f"workers {self.workers} needs a store the workers share: set --store "
                              "redis://HOST:PORT/DB (CHAT_WIDGET_STORE); with a file or memory store each worker "
                              "would keep its own conversations and a visitor's reconnect would lose them")
        self.reply_lease = _int_setting("reply_lease", values["reply_lease"], 1, 600)
        self.retention = _int_setting("retention", values["retention"], 10, 30 * 86400)
        self.sweep_interval = _int_setting("sweep_interval", values["sweep_interval"], 1, 3600)
        self.history_limit = _int_setting("history_limit", values["history_limit"], 10, 100_000)
        self.address_messages_per_minute = _int_setting(
            "address_messages_per_minute", values["address_messages_per_minute"], 1, 1_000_000)
        self.address_bytes_per_minute = _at_least_a_message(
            "address_bytes_per_minute", _int_setting("address_bytes_per_minute", values["address_bytes_per_minute"],
                                                     1, 1 << 40), self.max_message_bytes)
        self.address_conversations_per_hour = _int_setting(
            "address_conversations_per_hour", values["address_conversations_per_hour"], 1, 1_000_000)
        self.address_replies_per_minute = _int_setting(
            "address_replies_per_minute", values["address_replies_per_minute"], 1, 1_000_000)
        self.address_waiting_replies = _int_setting(
            "address_waiting_replies", values["address_waiting_replies"], 0, 1000)
        self.conversation_max_bytes = _at_least_a_message(
            "conversation_max_bytes", _int_setting("conversation_max_bytes", values["conversation_max_bytes"],
                                                   1, 1 << 40), self.max_message_bytes)
        self.store_max_bytes = _int_setting("store_max_bytes", values["store_max_bytes"], 1 << 20, 1 << 50)
        self.store_warn_percent = _int_setting("store_warn_percent", values["store_warn_percent"], 1, 100)
        self.consultant = _choice_setting("consultant", values["consultant"], CONSULTANTS)
        self.ranker = _choice_setting("ranker", values["ranker"], RANKERS)
        self.knowledge_path = str(values["knowledge_path"] or "")
        self.openai_base_url = str(values["openai_base_url"] or "")
        self.openai_model = str(values["openai_model"] or "")
        self.openai_api_key = str(values["openai_api_key"] or "")
        self.system_prompt = str(values["system_prompt"] or "")
        self.faults = _faults_setting(values["faults"])
        self.socket_url = _socket_url_setting(values["socket_url"])
        self.http_fallback = _choice_setting("http_fallback", values["http_fallback"], HTTP_FALLBACKS)
        self.http_upgrade_interval = _int_setting("http_upgrade_interval", values["http_upgrade_interval"], 1, 86400)
        self.contact_email = str(values["contact_email"])
        self.contact_phone = str(values["contact_phone"])
        self.contact_url = str(values["contact_url"])
        if self.contact_url and not self.contact_url.startswith(("https://", "http://", "/")):
            raise ConfigError("contact_url must be an http(s) URL or a path starting with '/'")
        self.root = Path(values["root"])
        cache = Path(values["asset_cache"])
        self.asset_cache = cache if cache.is_absolute() else self.root / cache
        self.pyodide_snapshot = _bool_setting("pyodide_snapshot", values["pyodide_snapshot"])
        self.python_delivery = _choice_setting("python_delivery", values["python_delivery"], PYTHON_DELIVERIES)
        self.gc = _choice_setting("gc", values["gc"], GC_POLICIES)
        self.catalogues = str(values["catalogues"] or "")
        try:
            self.languages = languages.load(self.catalogues)
        except languages.CatalogueError as error:
            raise ConfigError(str(error)) from None
        self.version = VERSION

    @classmethod
    def from_environment(cls, environ=None, **given):
        """Settings from ``CHAT_WIDGET_*`` variables, overridden by ``given`` values that are not None."""
        environ = os.environ if environ is None else environ
        values = {}
        for setting in SETTINGS:
            if setting.env in environ:
                values[setting.name] = environ[setting.env]
        if not values.get("openai_api_key") and environ.get("OPENAI_API_KEY"):
            values["openai_api_key"] = environ["OPENAI_API_KEY"]
        values.update({key: value for key, value in given.items() if value is not None and value != ()})
        return cls(**values)

    @property
    def store_kind(self):
        """``memory``, ``sqlite`` or ``redis``: which store ``store`` names."""
        if self.store == "memory":
            return "memory"
        return "redis" if _SCHEME.match(self.store) else "sqlite"

    @property
    def contact(self):
        """Other ways to get help, shown by the widget when chat cannot connect (empty ones omitted)."""
        found = {"email": self.contact_email, "phone": self.contact_phone, "url": self.contact_url}
        return {key: value for key, value in found.items() if value}

    def __setattr__(self, name, value):
        if "version" in self.__dict__:
            raise AttributeError(f"Config is read-only after start; cannot set {name}")
        super().__setattr__(name, value)

    def __repr__(self):
        return f"Config(host={self.host!r}, port={self.port}, runtime={self.runtime!r}, origins={self.allow_origins!r})"


def setting_hint(name):
    """How a site owner sets ``name``: its option (if any) and its environment variable."""
    setting = next(s for s in SETTINGS if s.name == name)
    return f"{name} ({setting.option} or {setting.env})" if setting.option else f"{name} ({setting.env})"


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
STORE_SCHEMES = ("redis", "rediss")


def _store_setting(value):
    """'memory', a file path, or a supported store URL: a value with a scheme is never taken for a path."""
    text = str(value or "").strip()
    hint = "use redis://HOST:PORT/DB, a file path for SQLite, or 'memory'"
    if not text:
        raise ConfigError(f"store must not be empty: {hint}")
    if not _SCHEME.match(text):
        return text
    parts = urlsplit(text)
    shown = f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if _port_or_none(parts) else "") + parts.path
    if parts.scheme.lower() not in STORE_SCHEMES:
        raise ConfigError(f"store {parts.scheme}://... is not a supported store URL: {hint}")
    if not parts.hostname:
        raise ConfigError(f"store {shown!r} names no host: {hint}")
    if _port_or_none(parts) is False:
        raise ConfigError(f"store {parts.scheme}://{parts.hostname}:... has an invalid port: {hint}")
    if parts.path not in ("", "/") and not re.fullmatch(r"/\d{1,5}", parts.path):
        raise ConfigError(f"store {shown!r}: the path must be the database number, e.g. /0")
    return text


def _port_or_none(parts):
    """The URL's port, None when it has none, False when it is not a valid port."""
    try:
        return parts.port
    except ValueError:
        return False


def _int_setting(name, value, low, high):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number between {low} and {high}, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {number}")
    return number


def _at_least_a_message(name, number, max_message_bytes):
    """A byte budget must let one message of the largest allowed size through."""
    if number < max_message_bytes:
        raise ConfigError(f"{name} must be at least max_message_bytes ({max_message_bytes}), or the largest "
                          f"message allowed could never pass; got {number}")
    return number


def _networks_setting(name, value):
    """Addresses or networks (``10.0.0.5``, ``10.0.0.0/8``, ``::1``), as uvicorn's proxy headers take them."""
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    networks = tuple(str(item) for item in value)
    for item in networks:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{name}: {item!r} is not an IP address or network such as 10.0.0.5 or "
                              "10.0.0.0/8") from None
    return networks


def _bool_setting(name, value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("", "0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")


def _faults_setting(value):
    """``"drop_ack_once,reply_delay=1.5"`` -> ``{"drop_ack_once": True, "reply_delay": 1.5}``."""
    if isinstance(value, dict):
        value = ",".join(name if argument is True else f"{name}={argument}" for name, argument in value.items())
    faults = {}
    for item in str(value or "").replace(" ", "").split(","):
        if not item:
            continue
        name, _, argument = item.partition("=")
        if name not in FAULTS:
            raise ConfigError(f"faults: unknown fault {name!r}; known: {', '.join(FAULTS)}")
        try:
            faults[name] = float(argument) if argument else True
        except ValueError:
            raise ConfigError(f"faults: {name} takes a number of seconds, got {argument!r}") from None
    return faults


def _socket_url_setting(value):
    text = str(value or "")
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ConfigError(f"socket_url must be an absolute ws:// or wss:// URL such as wss://chat.example.com/ws, got {text!r}")
    return text


def _choice_setting(name, value, choices):
    text = str(value).lower()
    if text not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return text


def _origins_setting(value):
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    origins = tuple(value)
    for origin in origins:
        if origin == "*":
            raise ConfigError(
                "allow_origins: '*' would let any website use this chat server; list the sites' origins "
                "(https://shop.example.com) or a subdomain wildcard (https://*.example.com)"
            )
        try:
            OriginRule(origin)
        except OriginError as error:
            raise ConfigError(f"allow_origins: {error}") from None
    return origins
