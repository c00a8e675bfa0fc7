"""All server settings in one validated place.

Settings come from command-line options or ``CHAT_WIDGET_*`` environment variables (the CLI maps both
onto the same names); ``Config`` checks them once and refuses bad values with a message that names the
setting and the fix.
"""

from pathlib import Path
from urllib.parse import urlsplit

from .origins import OriginError, OriginRule

RUNTIMES = ("micropython", "pyodide")
CONSULTANTS = ("knowledge", "openai", "helpdesk")
LOG_LEVELS = ("debug", "info", "warning", "error")
ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting is invalid; the message names the setting and how to fix it."""


class Config:
    """Validated server settings. Unknown keyword arguments are refused."""

    DEFAULTS = {
        "host": "127.0.0.1",
        "port": 8000,
        "allow_origins": (),            # empty: only the server's own origin
        "allow_missing_origin": False,  # allow handshakes without an Origin header (non-browser clients)
        "runtime": "micropython",
        "log_level": "info",
        "max_message_bytes": 16 * 1024,
        "max_connections": 10_000,
        "idle_timeout": 300,            # seconds without any frame from the client: close 1001
        "max_connections_per_address": 20,  # per IPv4 address or IPv6 /64; beyond: 429 before upgrade
        "message_rate": 20,             # visitor messages per message_period seconds, sustained ...
        "message_period": 10,
        "message_burst": 10,            # ... and at once after a quiet spell
        "store": "var/chat.sqlite3",    # SQLite file for conversations, or "memory" (lost on restart)
        "retention": 1800,              # seconds a quiet conversation is kept and can be resumed
        "history_limit": 500,           # entries kept per conversation
        "consultant": "knowledge",      # knowledge | openai | helpdesk (server/consultants.py)
        "knowledge_path": "",           # Markdown knowledge file; default: the demo's knowledge.md
        "openai_base_url": "",
        "openai_model": "",
        "system_prompt": "",
        "faults": "",                   # fault injection for tests only (see docs/protocol.md); off by default
        "socket_url": "",               # public ws(s):// URL of /ws when not on the page's own host
        "contact_email": "",
        "contact_phone": "",
        "contact_url": "",
        "root": ROOT,                   # where index.html, widget/ and node_modules/ live
    }

    def __init__(self, **settings):
        unknown = set(settings) - set(self.DEFAULTS)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        values = dict(self.DEFAULTS)
        values.update({key: value for key, value in settings.items() if value is not None})
        self.host = str(values["host"])
        self.port = _int_setting("port", values["port"], 0, 65535)
        self.allow_origins = _origins_setting(values["allow_origins"])
        self.allow_missing_origin = bool(values["allow_missing_origin"])
        self.runtime = _choice_setting("runtime", values["runtime"], RUNTIMES)
        self.log_level = _choice_setting("log_level", values["log_level"], LOG_LEVELS)
        self.max_message_bytes = _int_setting("max_message_bytes", values["max_message_bytes"], 256, 1 << 20)
        self.max_connections = _int_setting("max_connections", values["max_connections"], 1, 1_000_000)
        # Above a minute: a hidden tab's timers (the widget's pings) may be throttled to once a minute.
        self.idle_timeout = _int_setting("idle_timeout", values["idle_timeout"], 65, 86400)
        self.max_connections_per_address = _int_setting(
            "max_connections_per_address", values["max_connections_per_address"], 1, 1_000_000)
        self.message_rate = _int_setting("message_rate", values["message_rate"], 1, 100_000)
        self.message_period = _int_setting("message_period", values["message_period"], 1, 3600)
        self.message_burst = _int_setting("message_burst", values["message_burst"], 1, 100_000)
        self.store = str(values["store"])
        if not self.store:
            raise ConfigError("store must be a file path for the SQLite database, or 'memory'")
        self.retention = _int_setting("retention", values["retention"], 60, 30 * 86400)
        self.history_limit = _int_setting("history_limit", values["history_limit"], 10, 100_000)
        self.consultant = _choice_setting("consultant", values["consultant"], CONSULTANTS)
        self.knowledge_path = str(values["knowledge_path"] or "")
        self.openai_base_url = str(values["openai_base_url"] or "")
        self.openai_model = str(values["openai_model"] or "")
        self.system_prompt = str(values["system_prompt"] or "")
        self.faults = _faults_setting(values["faults"])
        self.socket_url = _socket_url_setting(values["socket_url"])
        self.contact_email = str(values["contact_email"])
        self.contact_phone = str(values["contact_phone"])
        self.contact_url = str(values["contact_url"])
        if self.contact_url and not self.contact_url.startswith(("https://", "http://", "/")):
            raise ConfigError("contact_url must be an http(s) URL or a path starting with '/'")
        self.root = Path(values["root"])

    @property
    def contact(self):
        """Other ways to get help, shown by the widget when chat cannot connect (empty ones omitted)."""
        found = {"email": self.contact_email, "phone": self.contact_phone, "url": self.contact_url}
        return {key: value for key, value in found.items() if value}

    def __repr__(self):
        return f"Config(host={self.host!r}, port={self.port}, runtime={self.runtime!r}, origins={self.allow_origins!r})"


def _int_setting(name, value, low, high):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a whole number between {low} and {high}, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {number}")
    return number


FAULTS = ("drop_ack_once", "stall_ack_once", "reply_delay")


def _faults_setting(value):
    """``"drop_ack_once,reply_delay=1.5"`` -> ``{"drop_ack_once": True, "reply_delay": 1.5}``."""
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
