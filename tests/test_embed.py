"""Embedding: ``/embed.js`` (the one tag's script), the widget's frame (``/embed/frame``) in the visitor's
language, and the frame's settings, which no word or contact can break out of."""

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from server.assets.page import FRAME_PATH, json_for_html

ORIGINS = ["https://shop.example.com", "https://*.example.org"]
SNIPPET = '<script src="/embed.js" async></script>'
HOSTILE = '</script><script>alert(1)</script><!--'


def directives(header):
    return {name: values for name, *values in (part.split() for part in header.split(";"))}


def launcher_words(script):
    """The WORDS object filled into /embed.js, parsed as JSON."""
    found = re.search(r"var WORDS = (\{.*?\});\n", script)
    assert found, "no WORDS in /embed.js"
    return json.loads(found.group(1))


class Elements(HTMLParser):
    """What a browser's tokenizer sees: every element's tag and attributes, and each script's text."""

    def __init__(self, html):
        super().__init__(convert_charrefs=True)
        self.tags, self.scripts, self._script = [], [], None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append([self._script, ""])

    def handle_data(self, data):
        if self._script is not None:
            self.scripts[-1][1] += data

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def settings(self):
        [(_, text)] = [(attrs, text) for attrs, text in self.scripts if attrs.get("id") == "chat-widget-settings"]
        return json.loads(text)

    def first(self, tag, **attrs):
        return next(found for name, found in self.tags if name == tag and all(found.get(k) == v for k, v in attrs.items()))


async def frame(client, query=""):
    response = await client.get(FRAME_PATH + query)
    assert response.status_code == 200
    return response, await response.get_data(as_text=True)


def site_catalogues(tmp_path, **catalogues):
    folder = tmp_path / "catalogues"
    folder.mkdir()
    for lang, words in catalogues.items():
        (folder / f"{lang}.json").write_text(json.dumps(words, ensure_ascii=False), encoding="utf-8")
    return str(folder)


# ---- /embed.js ------------------------------------------------------------------------------------

async def test_embed_script_is_javascript_with_every_languages_launcher_words_and_the_frame_path(client):
    response = await client.get("/embed.js")
    script = await response.get_data(as_text=True)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/javascript")
    assert "/*LAUNCHER_WORDS*/" not in script and "/*FRAME_PATH*/" not in script  # every placeholder filled
    assert 'var FRAME_PATH = "/embed/frame";' in script
    words = launcher_words(script)
    assert words["en"]["launcher"] == "Chat with us" and words["de"]["launcher"] == "Chatten Sie mit uns"
    assert words["de"]["unread_other"] == "{count} neue Nachrichten" and words["en"]["dir"] == "ltr"


async def test_embed_script_is_cached_for_minutes_then_revalidated_with_an_etag(client):
    """A site keeps the same tag across releases: a page view does not wait for a revalidation (five
    minutes, then stale-while-revalidate), and 304 while unchanged."""
    first = await client.get("/embed.js")
    assert first.headers["Cache-Control"] == "public, max-age=300, stale-while-revalidate=86400"
    assert first.headers["ETag"]
    again = await client.get("/embed.js", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304


async def test_embed_script_carries_a_sites_own_languages(make_app, tmp_path):
    folder = site_catalogues(tmp_path, fr={"launcher": "Discutez avec nous"}, ar={"dir": "rtl", "launcher": "تحدث معنا"})
    script = await (await make_app(catalogues=folder).test_client().get("/embed.js")).get_data(as_text=True)
    words = launcher_words(script)
    assert words["fr"]["launcher"] == "Discutez avec nous" and words["fr"]["panel"] == words["en"]["panel"]
    assert words["ar"] == {**words["ar"], "dir": "rtl", "launcher": "تحدث معنا"}


@pytest.mark.skipif(not shutil.which("node"), reason="node is not installed")
async def test_embed_script_is_valid_javascript(client, tmp_path):
    """The filled-in script parses (a catalogue's words cannot break its syntax)."""
    path = tmp_path / "embed.js"
    path.write_text(await (await client.get("/embed.js")).get_data(as_text=True), encoding="utf-8")
    checked = subprocess.run(["node", "--check", str(path)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr


# ---- the frame, in the visitor's language ---------------------------------------------------------

async def test_frame_in_german(client):
    _, html = await frame(client, "?lang=de")
    page = Elements(html)
    assert page.first("html")["lang"] == "de" and page.first("html")["dir"] == "ltr"
    assert "<title>Chat mit unserer Beratung</title>" in html
    assert ">Senden</button>" in html and ">Ihre Nachricht</label>" in html and ">Chat wird geladen…</p>" in html
    assert page.first("textarea")["placeholder"] == "Ihre Frage…"
    assert page.first("button", **{"data-action": "close"})["aria-label"] == "Chat schließen"
    settings = page.settings()
    assert settings["words"]["lang"] == "de" and settings["words"]["send"] == "Senden"
    assert "Send<" not in html and "Loading chat" not in html


@pytest.mark.parametrize("query,lang", [("", "en"), ("?lang=en", "en"), ("?lang=de-AT", "de"), ("?lang=DE", "de"),
                                        ("?lang=xx", "en"), ("?lang=", "en"), ("?lang=%22%3E%3Cb%3E", "en")])
async def test_frame_language_falls_back_to_english(client, query, lang):
    """A regional tag gets its language; an unknown (or hostile) one gets English and is not echoed."""
    _, html = await frame(client, query)
    page = Elements(html)
    assert page.first("html")["lang"] == lang and page.settings()["words"]["lang"] == lang
    assert "<b>" not in html


async def test_frame_in_a_sites_right_to_left_language(make_app, tmp_path):
    folder = site_catalogues(tmp_path, ar={"dir": "rtl", "send": "إرسال"})
    _, html = await frame(make_app(catalogues=folder).test_client(), "?lang=ar")
    page = Elements(html)
    assert page.first("html") == {"lang": "ar", "dir": "rtl"}
    assert ">إرسال</button>" in html and page.settings()["words"]["title"] == "Ask our consultant"  # the rest: English


async def test_frame_policy_lets_only_the_allowed_sites_frame_it(client):
    """frame-ancestors names the allowed sites (and this server, for its demo page)."""
    response, _ = await frame(client, "?lang=de")
    policy = directives(response.headers["Content-Security-Policy"])
    assert policy["frame-ancestors"] == ["'self'", *ORIGINS]


async def test_the_demo_page_is_a_host_page_with_the_snippet_only(client):
    response = await client.get("/")
    html = await response.get_data(as_text=True)
    assert SNIPPET in html and response.headers["Content-Type"].startswith("text/html")
    policy = response.headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in policy and "'unsafe-inline'" not in policy
    assert directives(policy)["script-src"] == ["'self'"]


# ---- the settings cannot be broken out of ---------------------------------------------------------

async def test_hostile_words_and_contacts_stay_inside_the_settings(make_app, tmp_path):
    """A catalogue or contact holding ``</script>`` or ``<!--`` stays data: the page keeps its elements, the
    settings parse back to the very strings, and the words shown in the page are escaped."""
    folder = site_catalogues(tmp_path, fr={"title": HOSTILE, "send": "<b>Envoyer</b> & co", "status": {"idle": HOSTILE}})
    usual = [attrs for attrs, _ in Elements((await frame(make_app().test_client()))[1]).scripts]
    client = make_app(catalogues=folder, contact_email=HOSTILE, contact_url="/contact?" + HOSTILE).test_client()
    _, english = await frame(client)
    _, html = await frame(client, "?lang=fr")
    for page in (Elements(english), Elements(html)):
        assert [attrs for attrs, _ in page.scripts] == usual  # not one script element more or less
        settings = page.settings()
        assert settings["contact"]["email"] == HOSTILE and settings["contact"]["url"] == "/contact?" + HOSTILE
        assert not any("alert(1)" in text for attrs, text in page.scripts if attrs.get("id") != "chat-widget-settings")
    words = Elements(html).settings()["words"]
    assert words["title"] == HOSTILE and words["status"]["idle"] == HOSTILE and words["send"] == "<b>Envoyer</b> & co"
    assert "&lt;b&gt;Envoyer&lt;/b&gt; &amp; co</button>" in html  # escaped where the page shows it
    assert "<title>Chat with our consultant</title>" in html  # the words fr.json left out: English


@pytest.mark.parametrize("value", [HOSTILE, {"a": "</SCRIPT >", "b": ["<!--", "-->", "&amp;"]}, "\u2028 ü", 5, None])
def test_json_for_html_round_trips_without_markup(value):
    text = json_for_html(value)
    assert json.loads(text) == value
    assert "<" not in text and ">" not in text and "&" not in text
