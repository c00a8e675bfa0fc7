"""The consultant in the real widget: offline knowledge answers, 'I don't know', and a streamed LLM reply."""

import asyncio
import re
import sys
import threading
from pathlib import Path

import pytest
from playwright.sync_api import expect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from openai_stub import OpenAIStub  # noqa: E402

CONSULTANT = '[data-author="consultant"]'


def ask(frame, text):
    frame.fill('textarea[name="message"]', text)
    frame.press('textarea[name="message"]', "Enter")


def test_knowledge_consultant_answers_site_questions_and_admits_what_it_does_not_know(start_server, open_chat):
    """Offline: a site question gets the knowledge file's answer; an off-topic one gets 'don't know' with contacts."""
    server = start_server("--contact-email", "hello@lantern-loom.example")
    frame = open_chat(server.url + "/")
    ask(frame, "How long does delivery take?")
    expect(frame.locator(CONSULTANT).nth(0)).to_contain_text("2 to 4 working days")
    ask(frame, "What is the capital of France?")
    expect(frame.locator(CONSULTANT).nth(1)).to_contain_text("don't know")
    expect(frame.locator(CONSULTANT).nth(1)).to_contain_text("hello@lantern-loom.example")


@pytest.fixture
def openai_stub():
    """An OpenAI-compatible server on loopback that streams its pieces slowly."""
    loop = asyncio.new_event_loop()
    stub = OpenAIStub(mode="trickle", pieces=("Our lamps ", "are made ", "in Ghent."), delay=0.4)
    ready = threading.Event()

    async def run():
        async with stub:
            ready.set()
            await stop.wait()

    stop = asyncio.Event()
    thread = threading.Thread(target=lambda: loop.run_until_complete(run()), daemon=True)
    thread.start()
    ready.wait(5)
    yield stub
    loop.call_soon_threadsafe(stop.set)
    thread.join(5)


def test_openai_reply_streams_into_the_widget_with_typing_indicator(start_server, open_chat, openai_stub):
    """Pointed at an OpenAI-compatible server, the reply appears piece by piece, then complete."""
    server = start_server("--consultant", "openai", "--openai-base-url", openai_stub.base_url,
                          "--openai-model", "test-model")
    frame = open_chat(server.url + "/")
    ask(frame, "Where are your lamps made?")
    expect(frame.locator("[data-typing]")).to_be_visible()
    streaming = frame.locator(f"{CONSULTANT}[data-streaming]")
    expect(streaming).to_have_text(re.compile(r"^Our lamps"))  # mid-stream: part of the answer, still streaming
    expect(frame.locator(CONSULTANT)).to_have_text(["Our lamps are made in Ghent."])
    expect(streaming).to_have_count(0)
    expect(frame.locator("[data-typing]")).to_be_hidden()
    assert openai_stub.requests[0].body["model"] == "test-model"
