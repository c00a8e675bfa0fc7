"""The openai consultant against a real OpenAI-compatible stub server on loopback (tests/openai_stub.py)."""

import asyncio
from pathlib import Path

import pytest

from server.config import CONSULTANTS, Config, ConfigError
from server.consultants import (
    AuthenticationFailed,
    ConsultantError,
    ConsultantTimeout,
    Knowledge,
    OpenAIConsultant,
    RateLimited,
    ReplyCutOff,
    UpstreamError,
    build,
)
from server.consultants.openai import DEFAULT_SYSTEM_PROMPT

from openai_stub import OpenAIStub

ROOT = Path(__file__).resolve().parent.parent
HISTORY = [
    {"author": "visitor", "text": "Hi, do you sell lamps?"},
    {"author": "consultant", "text": "Yes, handmade ones."},
    {"author": "visitor", "text": "Do you ship to Germany?"},
]
SECRET = "sk-test-secret-0123456789"


async def collect(consultant, history=HISTORY, lang=None):
    return [piece async for piece in consultant.reply(history, lang)]


async def collect_until_error(consultant, history=HISTORY):
    """(pieces yielded, the exception that ended the reply)."""
    pieces = []
    with pytest.raises(ConsultantError) as caught:
        async for piece in consultant.reply(history):
            pieces.append(piece)
    return pieces, caught.value


def consultant_for(stub, **options):
    options.setdefault("model", "stub-model")
    return OpenAIConsultant(base_url=stub.base_url, **options)


async def test_streams_pieces_in_order():
    """A normal streamed reply yields the content pieces, in order, and nothing else."""
    async with OpenAIStub(pieces=["Yes", ", we ship", " to Germany."]) as stub:
        async with consultant_for(stub) as consultant:
            assert await collect(consultant) == ["Yes", ", we ship", " to Germany."]
    assert stub.requests[0].method == "POST"
    assert stub.requests[0].path == "/v1/chat/completions"


async def test_first_piece_arrives_before_the_last_is_sent():
    """Pieces are yielded as they arrive: the first reaches the caller while the stub still holds the last."""
    async with OpenAIStub(pieces=["One", " two", " three"], gate_before_last=True) as stub:
        async with consultant_for(stub) as consultant:
            reply = consultant.reply(HISTORY)
            first = await anext(reply)
            assert first == "One"
            assert not stub.sent_last, "the consultant waited for the whole reply before yielding"
            stub.gate.set()
            rest = [piece async for piece in reply]
            assert stub.sent_last
            assert rest == [" two", " three"]


async def test_request_body_carries_model_stream_prompt_and_roles():
    """The request names the model, asks for a stream, starts with the system prompt and maps authors to roles."""
    async with OpenAIStub() as stub:
        async with consultant_for(stub, model="llama3.2:1b", system_prompt="You sell lamps. Be brief.") as consultant:
            await collect(consultant)
    body = stub.requests[0].body
    assert body["model"] == "llama3.2:1b"
    assert body["stream"] is True
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][0]["content"].startswith("You sell lamps. Be brief.")
    assert body["messages"][1:] == [
        {"role": "user", "content": "Hi, do you sell lamps?"},
        {"role": "assistant", "content": "Yes, handmade ones."},
        {"role": "user", "content": "Do you ship to Germany?"},
    ]
    assert stub.requests[0].headers["content-type"] == "application/json"


async def test_default_system_prompt_keeps_the_model_on_the_site():
    """Without a custom prompt the default one asks for concise, on-topic answers and honesty when unsure."""
    async with OpenAIStub() as stub:
        async with consultant_for(stub) as consultant:
            await collect(consultant)
    system = stub.requests[0].body["messages"][0]["content"]
    assert system.startswith(DEFAULT_SYSTEM_PROMPT)
    for phrase in ("concise", "Only help with questions about this business", "don't know", "contacting the team"):
        assert phrase in system


async def test_authorization_header_sent_only_with_a_key():
    """A key is sent as a Bearer token; without a key (local servers) there is no Authorization header."""
    async with OpenAIStub() as stub:
        async with consultant_for(stub, api_key=SECRET) as with_key:
            await collect(with_key)
        async with consultant_for(stub, api_key="") as without_key:
            await collect(without_key)
    assert stub.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert "authorization" not in stub.requests[1].headers


async def test_knowledge_grounds_the_system_message():
    """With knowledge files, the sections matching the latest question and the contacts go into the system message."""
    knowledge = Knowledge(ROOT / "knowledge.md")
    async with OpenAIStub() as stub:
        async with consultant_for(stub, knowledge=knowledge, contact={"email": "hello@lantern-loom.example"}) as consultant:
            await collect(consultant)
    system = stub.requests[0].body["messages"][0]["content"]
    assert "## Do you ship abroad?" in system
    assert "We ship to all EU countries" in system
    assert system.count("\n## ") <= 3
    assert "hello@lantern-loom.example" in system


async def test_knowledge_in_the_visitors_language_grounds_the_system_message():
    """With lang "de" (or "de-AT") the sections come from knowledge.de.md; without lang, or with a language
    that has no file, from the main file; request_body(history) alone still works."""
    knowledge = Knowledge(ROOT / "knowledge.md")
    history = [{"author": "visitor", "text": "Liefern Sie auch nach Österreich?"}]
    async with OpenAIStub() as stub:
        async with consultant_for(stub, knowledge=knowledge) as consultant:
            await collect(consultant, history, "de")
            await collect(consultant, history, "de-AT")
            await collect(consultant, HISTORY, "fr")
            assert consultant.request_body(HISTORY) == consultant.request_body(HISTORY, None)
    for request in stub.requests[:2]:
        system = request.body["messages"][0]["content"]
        assert "## Liefern Sie ins Ausland?" in system
        assert "Wir liefern in alle EU-Länder" in system
    assert "We ship to all EU countries" in stub.requests[2].body["messages"][0]["content"]


async def test_401_raises_authentication_failed_without_the_key():
    """A rejected key gives a clear 'authentication failed' error that does not repeat the key."""
    async with OpenAIStub(mode="401") as stub:
        async with consultant_for(stub, api_key=SECRET) as consultant:
            pieces, error = await collect_until_error(consultant)
    assert pieces == []
    assert isinstance(error, AuthenticationFailed)
    assert str(error) == "authentication failed (check the API key)"
    assert SECRET not in str(error)


async def test_429_with_short_retry_after_retries_once_then_streams():
    """A 429 asking to retry after 1 s is retried once, and the second attempt's reply comes through."""
    async with OpenAIStub(mode="429-then-stream", pieces=["After", " waiting"]) as stub:
        async with consultant_for(stub) as consultant:
            started = asyncio.get_running_loop().time()
            assert await collect(consultant) == ["After", " waiting"]
            waited = asyncio.get_running_loop().time() - started
    assert len(stub.requests) == 2
    assert waited >= 0.9


async def test_429_with_long_retry_after_raises_rate_limited():
    """A 429 asking to wait 30 s is not waited for: the reply fails at once with 'rate limited'."""
    async with OpenAIStub(mode="429-long") as stub:
        async with consultant_for(stub) as consultant:
            pieces, error = await collect_until_error(consultant)
    assert isinstance(error, RateLimited)
    assert str(error).startswith("rate limited")
    assert "30" in str(error)
    assert len(stub.requests) == 1


async def test_500_raises_upstream_error_with_status_and_redacted_detail():
    """A 5xx raises an error naming the status; a key echoed by the server is redacted."""
    async with OpenAIStub(mode="500") as stub:
        async with consultant_for(stub, api_key=SECRET) as consultant:
            pieces, error = await collect_until_error(consultant)
    assert isinstance(error, UpstreamError)
    assert "HTTP 500" in str(error)
    assert "model crashed" in str(error)
    assert SECRET not in str(error)


async def test_stream_cut_midway_yields_what_came_then_raises():
    """A connection closed mid-stream first yields the pieces that arrived, then raises 'the reply was cut off'."""
    async with OpenAIStub(mode="cut", pieces=["Part one", ", part two", ", never sent"]) as stub:
        async with consultant_for(stub) as consultant:
            pieces, error = await collect_until_error(consultant)
    assert pieces == ["Part one", ", part two"]
    assert isinstance(error, ReplyCutOff)
    assert str(error) == "the reply was cut off"


async def test_stream_ending_without_done_counts_as_cut_off():
    """A body that ends cleanly but never sent [DONE] (nor a finish reason) is also a cut-off reply."""
    async with OpenAIStub(mode="no-done", pieces=["Part one", ", part two", ", never sent"]) as stub:
        async with consultant_for(stub) as consultant:
            pieces, error = await collect_until_error(consultant)
    assert pieces == ["Part one", ", part two"]
    assert isinstance(error, ReplyCutOff)


async def test_slow_first_token_times_out():
    """No content within first_token_timeout raises a timeout (a role-only delta does not count as a token)."""
    async with OpenAIStub(mode="slow-first", delay=10.0) as stub:
        async with consultant_for(stub, first_token_timeout=0.3) as consultant:
            pieces, error = await collect_until_error(consultant)
    assert pieces == []
    assert isinstance(error, ConsultantTimeout)
    assert "did not start answering within 0.3 s" in str(error)


async def test_slow_response_headers_count_towards_first_token_timeout():
    """A server that doesn't even send its headers in time hits the first-token timeout too."""
    async with OpenAIStub(mode="slow-headers", delay=10.0) as stub:
        async with consultant_for(stub, first_token_timeout=0.3) as consultant:
            pieces, error = await collect_until_error(consultant)
    assert isinstance(error, ConsultantTimeout)
    assert "did not start answering" in str(error)


async def test_total_timeout_stops_a_trickling_reply():
    """A reply still trickling in after total_timeout is stopped with a timeout, after yielding what came."""
    async with OpenAIStub(mode="trickle", pieces=["a", "b", "c", "d", "e", "f", "g", "h"], delay=0.15) as stub:
        async with consultant_for(stub, first_token_timeout=5, total_timeout=0.5) as consultant:
            pieces, error = await collect_until_error(consultant)
    assert isinstance(error, ConsultantTimeout)
    assert "took longer than 0.5 s" in str(error)
    assert 1 <= len(pieces) < 8


async def test_non_streamed_json_reply_is_accepted():
    """A server that ignores stream=true and sends one JSON completion still gives the reply."""
    async with OpenAIStub(mode="json", pieces=["Whole", " reply"]) as stub:
        async with consultant_for(stub) as consultant:
            assert await collect(consultant) == ["Whole reply"]


async def test_closing_the_reply_early_closes_the_connection():
    """Closing the generator mid-reply (visitor left) closes the HTTP connection to the model server."""
    async with OpenAIStub(pieces=["One", " two", " three"], gate_before_last=True) as stub:
        async with consultant_for(stub) as consultant:
            reply = consultant.reply(HISTORY)
            assert await anext(reply) == "One"
            await reply.aclose()
            await asyncio.wait_for(stub.disconnected.wait(), 5)
            assert not stub.sent_last


async def test_cancelling_the_consuming_task_closes_the_connection():
    """Cancelling the task that reads the reply (as the socket does) closes the connection to the model server."""
    got_first = asyncio.Event()

    async def consume(consultant):
        async for _ in consultant.reply(HISTORY):
            got_first.set()

    async with OpenAIStub(pieces=["One", " two", " three"], gate_before_last=True) as stub:
        async with consultant_for(stub) as consultant:
            task = asyncio.create_task(consume(consultant))
            await asyncio.wait_for(got_first.wait(), 5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(stub.disconnected.wait(), 5)


async def test_unreachable_server_raises_upstream_error():
    """A server that isn't listening gives a clear 'cannot reach' error naming the URL."""
    async with OpenAIStub() as stub:
        base_url = stub.base_url
    async with OpenAIConsultant(base_url=base_url, model="m") as consultant:
        pieces, error = await collect_until_error(consultant)
    assert isinstance(error, UpstreamError)
    assert "cannot reach the model server at http://127.0.0.1:" in str(error)


# -- registry ------------------------------------------------------------------------------------


def test_build_requires_base_url_and_model():
    """build() for consultant openai names the missing setting and how to give it."""
    with pytest.raises(ConfigError, match=r"openai_base_url \(--openai-base-url or CHAT_WIDGET_OPENAI_BASE_URL\)"):
        build(Config(consultant="openai", openai_model="m"))
    with pytest.raises(ConfigError, match=r"openai_model \(--openai-model or CHAT_WIDGET_OPENAI_MODEL\)"):
        build(Config(consultant="openai", openai_base_url="http://127.0.0.1:11434/v1"))
    with pytest.raises(ConfigError, match="http"):
        build(Config(consultant="openai", openai_base_url="127.0.0.1:11434", openai_model="m"))


def test_unknown_consultant_names_are_refused():
    """An unknown consultant name is refused with the list of valid ones."""
    with pytest.raises(ConfigError, match="knowledge, openai, helpdesk"):
        Config.from_environment(environ={"CHAT_WIDGET_CONSULTANT": "oracle"})


async def test_build_makes_every_consultant_the_settings_offer():
    """Every name in server.config.CONSULTANTS builds a consultant of that name."""
    for name in CONSULTANTS:
        consultant = build(Config(consultant=name, openai_base_url="http://127.0.0.1:9/v1", openai_model="m"))
        assert consultant.name == name
        if hasattr(consultant, "aclose"):
            await consultant.aclose()


async def test_build_grounds_openai_in_the_knowledge_path_when_given():
    """For openai, knowledge_path is optional: without it there is no knowledge base, with it the file is used."""
    settings = {"consultant": "openai", "openai_base_url": "http://127.0.0.1:9/v1", "openai_model": "m"}
    async with build(Config(**settings)) as plain:
        assert plain.knowledge is None
    async with build(Config(knowledge_path=str(ROOT / "knowledge.md"), **settings)) as grounded:
        assert isinstance(grounded.knowledge, Knowledge)
        assert grounded.knowledge.main.path == ROOT / "knowledge.md"
        assert grounded.knowledge.for_language("de").path == ROOT / "knowledge.de.md"


async def test_build_takes_the_api_key_from_the_environment():
    """Config.from_environment reads CHAT_WIDGET_OPENAI_API_KEY, then OPENAI_API_KEY, else no key; build uses it."""
    async with OpenAIStub() as stub:
        base = {"CHAT_WIDGET_CONSULTANT": "openai", "CHAT_WIDGET_OPENAI_BASE_URL": stub.base_url,
                "CHAT_WIDGET_OPENAI_MODEL": "m"}
        environs = [
            {**base, "OPENAI_API_KEY": "sk-from-openai-env"},
            {**base, "OPENAI_API_KEY": "sk-from-openai-env", "CHAT_WIDGET_OPENAI_API_KEY": "sk-from-widget-env"},
            {**base, "OPENAI_API_KEY": "sk-from-openai-env", "CHAT_WIDGET_OPENAI_API_KEY": ""},
            base,
        ]
        made = [build(Config.from_environment(environ=environ)) for environ in environs]
        for consultant in made:
            await collect(consultant)
            await consultant.aclose()
    assert stub.requests[0].headers["authorization"] == "Bearer sk-from-openai-env"
    assert stub.requests[1].headers["authorization"] == "Bearer sk-from-widget-env"
    assert stub.requests[2].headers["authorization"] == "Bearer sk-from-openai-env"
    assert "authorization" not in stub.requests[3].headers
    assert made[0].name == "openai"
    assert all("sk-from" not in repr(consultant) for consultant in made)
