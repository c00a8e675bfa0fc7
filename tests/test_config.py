"""server/config.py: one table of settings, read from the environment and options, checked once."""

import subprocess
import sys
from pathlib import Path

import pytest

from server.config import DEFAULTS, SETTINGS, Config, ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_environment_variables_are_read_and_options_win():
    environ = {"CHAT_WIDGET_RETENTION": "120", "CHAT_WIDGET_ALLOW_ORIGINS": "https://a.example https://b.example",
               "CHAT_WIDGET_MESSAGE_BURST": "3", "CHAT_WIDGET_ALLOW_MISSING_ORIGIN": "true"}
    config = Config.from_environment(environ, retention="90", allow_origins=None)
    assert config.retention == 90
    assert config.allow_origins == ("https://a.example", "https://b.example")
    assert config.message_burst == 3 and config.allow_missing_origin is True


def test_every_setting_has_one_default_and_an_environment_variable():
    assert len({s.name for s in SETTINGS}) == len(SETTINGS)
    assert all(s.env == "CHAT_WIDGET_" + s.name.upper() for s in SETTINGS)
    config = Config.from_environment({})
    for setting in SETTINGS:
        if setting.name not in ("root", "asset_cache", "allow_origins", "faults"):
            assert getattr(config, setting.name) == DEFAULTS[setting.name], setting.name


def test_openai_key_falls_back_to_openai_api_key():
    assert Config.from_environment({"OPENAI_API_KEY": "sk-1"}).openai_api_key == "sk-1"
    assert Config.from_environment({"OPENAI_API_KEY": "sk-1", "CHAT_WIDGET_OPENAI_API_KEY": "sk-2"}).openai_api_key == "sk-2"


@pytest.mark.parametrize("environ,named", [
    ({"CHAT_WIDGET_MESSAGE_RATE": "lots"}, "message_rate"),
    ({"CHAT_WIDGET_PYTHON_DELIVERY": "carrier pigeon"}, "python_delivery"),
    ({"CHAT_WIDGET_ALLOW_MISSING_ORIGIN": "perhaps"}, "allow_missing_origin"),
    ({"CHAT_WIDGET_FAULTS": "explode"}, "faults"),
    ({"CHAT_WIDGET_CATALOGUES": "/no/such/folder"}, "catalogues"),
    ({"CHAT_WIDGET_TRUSTED_PROXIES": "10.0.0.1 nginx.internal"}, "trusted_proxies: 'nginx.internal'"),
    ({"CHAT_WIDGET_ADDRESS_BYTES_PER_MINUTE": "1000"}, "address_bytes_per_minute must be at least max_message_bytes"),
    ({"CHAT_WIDGET_CONVERSATION_MAX_BYTES": "4096"}, "conversation_max_bytes must be at least max_message_bytes"),
    ({"CHAT_WIDGET_STORE_MAX_BYTES": "1000"}, "store_max_bytes must be between"),
    ({"CHAT_WIDGET_STORE_WARN_PERCENT": "0"}, "store_warn_percent"),
    ({"CHAT_WIDGET_ADDRESS_CONVERSATIONS_PER_HOUR": "none"}, "address_conversations_per_hour"),
])
def test_bad_environment_values_name_the_setting(environ, named):
    with pytest.raises(ConfigError, match=named):
        Config.from_environment(environ)


def test_config_cannot_change_after_start():
    config = Config()
    with pytest.raises(AttributeError, match="read-only"):
        config.idle_timeout = 1


def test_version_comes_from_the_installed_package():
    assert Config().version not in ("", "0+unknown")


def test_bad_environment_value_stops_the_server_with_one_line_and_exit_2():
    result = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--port", "0"], cwd=ROOT,
                            env={"PATH": "/usr/bin:/bin", "CHAT_WIDGET_IDLE_TIMEOUT": "5"},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == "chat-widget: configuration error: idle_timeout must be between 65 and 86400, got 5"


def test_trusted_proxies_take_addresses_and_networks():
    config = Config.from_environment({"CHAT_WIDGET_TRUSTED_PROXIES": "10.0.0.5 10.1.0.0/16, ::1"})
    assert config.trusted_proxies == ("10.0.0.5", "10.1.0.0/16", "::1")
    assert Config().trusted_proxies == ()
