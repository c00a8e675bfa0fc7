"""The widget's word catalogues: English and German ship in ``widget/lang/``; a site adds or
replaces languages with JSON files of its own (setting ``catalogues``: a folder of ``<lang>.json``).

A site's catalogue is merged over the shipped one of its language, else over English, so a key it
leaves out reads in that language (or English) rather than breaking the widget; a key English does
not have, or a value of the wrong shape, is refused at start with a message naming the file and the
key. ``launcher_words`` is the part the host page's launcher
(``/embed.js``) needs before the frame exists.
"""

import json
from pathlib import Path

from protocol.checks import LANG_TAG

LAUNCHER_KEYS = ("launcher", "unread_one", "unread_other", "new_message", "panel", "dir")
DIRECTIONS = ("ltr", "rtl")


class CatalogueError(ValueError):
    """A site's catalogue cannot be used; the message names the file and the key."""


SHIPPED = Path(__file__).resolve().parent.parent / "widget" / "lang"


def load(folder=None, shipped=SHIPPED):
    """``{lang: catalogue}``: the shipped ones (``widget/lang``), then the site's ``folder``."""
    english = _read(shipped / "en.json")
    found = {}
    for path in sorted(shipped.glob("*.json")):
        found[path.stem] = _checked(english, _read(path), path)
    if folder:
        folder = Path(folder)
        if not folder.is_dir():
            raise CatalogueError(f"catalogues: {folder} is not a folder of <lang>.json files")
        for path in sorted(folder.glob("*.json")):
            # Over the shipped catalogue of that language when there is one: a site that changes one
            # German word keeps the rest German.
            base = found.get(path.stem.lower(), english)
            found[path.stem.lower()] = _checked(base, _read(path), path)
    return found


def launcher_words(catalogues):
    """The few words of each language that the host page's launcher shows."""
    return {lang: {key: words[key] for key in LAUNCHER_KEYS} for lang, words in catalogues.items()}


def is_language_tag(text):
    """Whether ``text`` is a language tag as the protocol's ``hello`` accepts it (``de``, ``pt-BR``)."""
    return LANG_TAG.fullmatch(text) is not None


def base_language(tag):
    """``de-AT`` → ``de``."""
    return str(tag or "").strip().lower().split("-")[0]


def choose(options, wanted, default="en"):
    """The entry of ``options`` (by language tag) for ``wanted`` (``de-AT`` falls back to ``de``), else
    the ``default`` language's."""
    tag = str(wanted or "").strip().lower()
    for candidate in (tag, base_language(tag)):
        if candidate in options:
            return options[candidate]
    return options[default]


def _read(path):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise CatalogueError(f"catalogues: {path} is not a readable JSON file: {error}") from None
    if not isinstance(data, dict):
        raise CatalogueError(f"catalogues: {path} must hold a JSON object of words")
    return data


def _checked(base, words, path):
    lang = path.stem.lower()
    if not is_language_tag(lang):
        raise CatalogueError(f"catalogues: {path.name}: name the file by its language tag, such as fr.json or pt-br.json")
    merged = _merge(base, words, path, "")
    merged["lang"] = lang
    if merged["dir"] not in DIRECTIONS:
        raise CatalogueError(f"catalogues: {path.name}: dir must be ltr or rtl, got {merged['dir']!r}")
    return merged


def _merge(base, words, path, where):
    """``words`` over ``base`` (same keys, same shapes), checked."""
    merged = {}
    for key in words:
        if key not in base:
            raise CatalogueError(f"catalogues: {path.name}: unknown key {(where + key)!r} (the keys are those of widget/lang/en.json)")
    for key, default in base.items():
        value = words.get(key, default)
        name = where + key
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise CatalogueError(f"catalogues: {path.name}: {name} must be an object like English's")
            merged[key] = _merge(default, value, path, name + ".")
        elif isinstance(default, list):  # an alert: [title, [tips]]
            if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
                    and isinstance(value[1], list) and all(isinstance(tip, str) for tip in value[1])):
                raise CatalogueError(f"catalogues: {path.name}: {name} must be [\"title\", [\"tip\", ...]]")
            merged[key] = value
        else:
            if not isinstance(value, str):
                raise CatalogueError(f"catalogues: {path.name}: {name} must be a string")
            merged[key] = value
    return merged
