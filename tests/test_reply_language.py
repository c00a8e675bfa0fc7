"""The widget's language reaches the consultant: ``hello``'s ``lang`` against the real server, over a real
socket and over the HTTP fallback (tests/live.py, tests/poll_client.py).

The server is ``chat-widget serve`` with the default knowledge consultant, so a German widget (``lang``
``de`` or ``de-AT``) is answered from knowledge.de.md and every other one from knowledge.md.
"""

import json

import pytest

import poll_client
from live import ALLOWED, opened, receive, start

QUESTION = "Wann habt ihr geöffnet?"
GERMAN_HOURS = "geöffnet"  # knowledge.de.md, "Wann haben Sie geöffnet?": "… 9:00 bis 18:00 Uhr geöffnet, …"


@pytest.fixture(scope="module")
def server():
    process = start()
    yield process
    process.stop()


def hello(**fields):
    return json.dumps({"type": "hello", **fields})


async def ask(ws, message_id, text):
    """Send a message; the consultant's stored reply to it."""
    await ws.send(json.dumps({"type": "message", "id": message_id, "text": text}))
    while (frame := await receive(ws))["type"] != "reply":
        assert frame["type"] in ("ack", "reply_start", "reply_chunk"), frame
    assert frame["in_reply_to"] == message_id
    return frame["text"]


def assert_not_german(text):
    assert GERMAN_HOURS not in text and "Das weiß ich" not in text and "Hallo" not in text, text
    assert "don't know" in text or "Monday" in text, text


@pytest.mark.parametrize("lang", ["de", "de-AT"])
async def test_hello_with_lang_de_gets_german_answers(server, lang):
    """A socket whose hello says lang de (or de-AT) gets the German file's answer and German small talk."""
    async with opened(server) as ws:
        await ws.send(hello(lang=lang))
        assert (await receive(ws))["type"] == "welcome"
        text = await ask(ws, "m1", QUESTION)
        assert GERMAN_HOURS in text and "9:00 bis 18:00" in text, text
        assert await ask(ws, "m2", "Danke!") == "Gern geschehen! Kann ich sonst noch etwas für Sie tun?"


@pytest.mark.parametrize("fields", [{}, {"lang": "en"}, {"lang": "fr-BE"}])
async def test_hello_without_a_german_lang_gets_english_answers(server, fields):
    """Without lang (or with a language that has no knowledge file) the same question gets English, not German."""
    async with opened(server) as ws:
        await ws.send(hello(**fields))
        assert (await receive(ws))["type"] == "welcome"
        assert_not_german(await ask(ws, "m1", QUESTION))
        assert "Monday to Saturday" in await ask(ws, "m2", "when are you open?")


async def test_lang_belongs_to_the_connection_not_the_session(server):
    """The language is the connection's: the same session resumed by a hello without lang is answered in English."""
    async with opened(server) as ws:
        await ws.send(hello(lang="de"))
        session = (await receive(ws))["session"]
        assert GERMAN_HOURS in await ask(ws, "m1", QUESTION)
    async with opened(server) as ws:
        await ws.send(hello(session=session, last_seq=2))
        welcome = await receive(ws)
        assert welcome["resumed"] is True and welcome["session"] == session
        assert_not_german(await ask(ws, "m2", QUESTION))


async def test_hello_with_lang_over_http_gets_german_answers(server):
    """The HTTP fallback runs the socket's connection, so a channel whose hello says lang de answers in German."""
    async with poll_client.client(server) as http:
        async with poll_client.opened(http, ALLOWED) as channel:
            await channel.join(lang="de")
            assert (await channel.send({"type": "message", "id": "m1", "text": QUESTION})).status_code == 204
            reply = (await channel.receive_until("reply"))[-1]
        assert reply["in_reply_to"] == "m1"
        assert GERMAN_HOURS in reply["text"] and "9:00 bis 18:00" in reply["text"], reply
        async with poll_client.opened(http, ALLOWED) as channel:
            await channel.join()
            await channel.send({"type": "message", "id": "m1", "text": QUESTION})
            assert_not_german((await channel.receive_until("reply"))[-1]["text"])
