"""server/languages.py: the shipped catalogues (en, de) and a site's own folder, checked at start."""

import json
import re

import pytest

from server import languages
from server.config import Config, ConfigError

SHIPPED = languages.SHIPPED


def shape(value):
    """A catalogue's structure: keys (nested) and, for strings, the placeholders they fill in."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items() if key != "lang"}
    if isinstance(value, list):
        return ["alert", len(value)]
    return sorted(re.findall(r"\{\w+\}", value))


def write(folder, name, words):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(words if isinstance(words, str) else json.dumps(words), encoding="utf-8")
    return folder


def test_shipped_english_and_german_have_the_same_keys_and_placeholders():
    english = json.loads((SHIPPED / "en.json").read_text(encoding="utf-8"))
    german = json.loads((SHIPPED / "de.json").read_text(encoding="utf-8"))
    assert shape(german) == shape(english)
    loaded = languages.load()
    assert set(loaded) >= {"en", "de"}
    assert loaded["de"]["send"] == "Senden" and loaded["de"]["lang"] == "de" and loaded["en"]["lang"] == "en"


def test_german_is_german():
    """Not a copy of English: every plain string of the German catalogue differs, except the few shared words."""
    english, german = languages.load()["en"], languages.load()["de"]
    same = [key for key, value in english.items() if isinstance(value, str) and german[key] == value]
    assert set(same) <= {"dir"}, same


def test_a_site_folder_adds_a_language_merged_over_english(tmp_path):
    folder = write(tmp_path / "site", "fr.json", {"launcher": "Discutez avec nous", "status": {"idle": "Prêt"}})
    loaded = languages.load(folder)
    french, english = loaded["fr"], loaded["en"]
    assert french["launcher"] == "Discutez avec nous" and french["status"]["idle"] == "Prêt"
    assert french["send"] == english["send"] and french["status"]["connected"] == english["status"]["connected"]
    assert french["alerts"] == english["alerts"] and french["lang"] == "fr" and french["dir"] == "ltr"
    assert loaded["de"]["send"] == "Senden"  # the shipped ones stay


def test_a_site_folder_replaces_a_shipped_language_and_may_be_right_to_left(tmp_path):
    folder = write(tmp_path / "site", "de.json", {"send": "Abschicken"})
    write(folder, "ar.json", {"dir": "rtl", "send": "إرسال"})
    loaded = languages.load(folder)
    assert loaded["de"]["send"] == "Abschicken"
    assert loaded["de"]["retry"] == "Jetzt erneut versuchen"  # the rest stays German, not English
    assert loaded["ar"]["retry"] == "Retry now"  # a new language falls back to English
    assert loaded["ar"]["dir"] == "rtl" and loaded["ar"]["lang"] == "ar"
    assert languages.launcher_words(loaded)["ar"]["dir"] == "rtl"


def test_file_names_are_language_tags_in_any_case(tmp_path):
    folder = write(tmp_path / "site", "PT-BR.json", {"send": "Enviar"})
    assert languages.load(folder)["pt-br"]["send"] == "Enviar"


@pytest.mark.parametrize("name,words,says", [
    ("fr.json", {"lanucher": "Discutez"}, ["fr.json", "lanucher", "widget/lang/en.json"]),
    ("fr.json", {"status": {"idel": "Prêt"}}, ["fr.json", "status", "idel"]),
    ("fr.json", {"status": "Prêt"}, ["fr.json", "status must be an object"]),
    ("fr.json", {"alerts": {"origin": "Non"}}, ["fr.json", "alerts.origin must be"]),
    ("fr.json", {"alerts": {"origin": ["Non", "pas une liste"]}}, ["fr.json", "alerts.origin must be"]),
    ("fr.json", {"send": 5}, ["fr.json", "send must be a string"]),
    ("fr.json", {"dir": "up"}, ["fr.json", "dir must be ltr or rtl", "'up'"]),
    ("french.json", {"send": "Envoyer"}, ["french.json", "language tag"]),
    ("pt_BR.json", {"send": "Enviar"}, ["pt_BR.json", "language tag"]),
    ("fr.json", "{not json", ["fr.json", "not a readable JSON file"]),
    ("fr.json", '["a list"]', ["fr.json", "must hold a JSON object"]),
])
def test_a_bad_site_catalogue_is_refused_naming_file_and_key(tmp_path, name, words, says):
    folder = write(tmp_path / "site", name, words)
    with pytest.raises(languages.CatalogueError) as refused:
        languages.load(folder)
    for part in says:
        assert part in str(refused.value)


def test_a_catalogues_setting_that_is_not_a_folder_is_refused(tmp_path):
    (tmp_path / "fr.json").write_text("{}", encoding="utf-8")
    for where in (tmp_path / "missing", tmp_path / "fr.json"):
        with pytest.raises(languages.CatalogueError, match="is not a folder") as refused:
            languages.load(where)
        assert str(where) in str(refused.value)


def test_files_that_are_not_json_are_ignored(tmp_path):
    folder = write(tmp_path / "site", "README.md", "# our words")
    assert set(languages.load(folder)) == set(languages.load())


@pytest.mark.parametrize("wanted,chosen", [
    ("de", "de"), ("de-AT", "de"), ("DE-at", "de"), (" de ", "de"), ("en-GB", "en"), ("fr", "en"),
    ("", "en"), (None, "en"), ("x" * 300, "en"),
])
def test_choose_falls_back_to_the_primary_language_then_english(wanted, chosen):
    assert languages.choose(languages.load(), wanted)["lang"] == chosen


def test_choose_prefers_an_exact_regional_catalogue(tmp_path):
    folder = write(tmp_path / "site", "pt-br.json", {"send": "Enviar"})
    write(folder, "pt.json", {"send": "Enviar (pt)"})
    loaded = languages.load(folder)
    assert languages.choose(loaded, "pt-BR")["send"] == "Enviar"
    assert languages.choose(loaded, "pt-PT")["send"] == "Enviar (pt)"


def test_launcher_words_are_the_few_the_host_page_needs():
    words = languages.launcher_words(languages.load())
    assert set(words) >= {"en", "de"}
    assert all(set(entry) == set(languages.LAUNCHER_KEYS) for entry in words.values())
    assert words["de"]["launcher"] == "Chatten Sie mit uns"


def test_config_loads_the_catalogues_and_refuses_bad_ones_at_start(tmp_path):
    folder = write(tmp_path / "site", "fr.json", {"send": "Envoyer"})
    assert Config(catalogues=str(folder)).languages["fr"]["send"] == "Envoyer"
    assert set(Config().languages) >= {"en", "de"}
    with pytest.raises(ConfigError, match="catalogues: .*is not a folder"):
        Config(catalogues=str(tmp_path / "missing"))
    write(folder, "es.json", {"sned": "Enviar"})
    with pytest.raises(ConfigError, match="es.json.*sned"):
        Config.from_environment({"CHAT_WIDGET_CATALOGUES": str(folder)})
