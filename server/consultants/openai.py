"""The ``openai`` consultant: streams replies from any OpenAI-compatible chat-completions endpoint.

Works with OpenAI itself and with local servers that speak the same API (Ollama at
``http://127.0.0.1:11434/v1``, llama.cpp's server, vLLM, LM Studio, ...). It POSTs
``{base_url}/chat/completions`` with ``stream: true``, reads the server-sent events (``data: {...}``
lines ending with ``data: [DONE]``) and yields each ``choices[0].delta.content`` piece as it arrives.

Failures raise :class:`~server.consultants.base.ConsultantError` subclasses whose messages never contain the
API key:

* 401/403 → :class:`AuthenticationFailed` "authentication failed (check the API key)";
* 429 → one retry after ``Retry-After`` seconds when that is at most ``max_retry_wait`` (5 s), else
  :class:`RateLimited` "rate limited ...";
* 5xx, other 4xx, unreachable server, malformed events → :class:`UpstreamError`;
* no content within ``first_token_timeout`` (20 s), or a reply longer than ``total_timeout`` (60 s)
  → :class:`ConsultantTimeout`;
* the stream ending before ``[DONE]`` (or a ``finish_reason``) → :class:`ReplyCutOff` "the reply was
  cut off", raised *after* the pieces that did arrive were yielded.

The generator is cancellation-safe: the HTTP response is closed in ``finally`` whichever way it ends.
Timeouts are applied around each network wait, never across a ``yield``.
"""

import asyncio
import email.utils
import json
import logging
import time
from urllib.parse import urlsplit, urlunsplit

import httpx

from .base import (
    AuthenticationFailed,
    Consultant,
    ConsultantTimeout,
    RateLimited,
    ReplyCutOff,
    UpstreamError,
)

__all__ = ["DEFAULT_SYSTEM_PROMPT", "OpenAIConsultant"]

log = logging.getLogger("chat_widget.openai")

DEFAULT_SYSTEM_PROMPT = """\
You are the online consultant of this website, chatting with a visitor through the chat widget on the site.
- Be friendly and concise: answer in a few short sentences of plain text (no Markdown, headings or tables), \
in the visitor's language.
- Only help with questions about this business, its products and services, orders, and this website. \
Politely decline anything else and steer back to how you can help.
- Rely only on the information below and on the conversation. Never invent prices, dates, policies, stock or \
contact details. When you don't know, say so plainly and suggest contacting the team.
- Never claim to be a human, and never ask for passwords or full card numbers."""

_KNOWLEDGE_INTRO = (
    "Information from the website that may help with the visitor's latest question "
    "(use it when relevant; it is the source of truth):"
)


class OpenAIConsultant(Consultant):
    """Streams replies from ``{base_url}/chat/completions``; one ``httpx.AsyncClient`` per instance.

    ``knowledge``: optional :class:`~server.consultants.knowledge.Knowledge` (the site's knowledge
    files); the (up to) 3 sections of the file in the visitor's language (``lang``; else the main file)
    that best match the visitor's latest question are added to the system message.
    ``contact``: optional ``{"email", "phone", "url"}`` the model may suggest. Call :meth:`aclose`
    when done.
    """

    name = "openai"

    def __init__(
        self,
        base_url,
        model,
        api_key="",
        system_prompt=None,
        knowledge=None,
        contact=None,
        first_token_timeout=20.0,
        total_timeout=60.0,
        connect_timeout=10.0,
        max_retry_wait=5.0,
        max_history=20,
        temperature=None,
        max_tokens=None,
        transport=None,
    ):
        if not base_url:
            raise ValueError("OpenAIConsultant needs a base_url such as http://127.0.0.1:11434/v1")
        if not model:
            raise ValueError("OpenAIConsultant needs a model name")
        self.base_url = str(base_url).rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = str(model)
        self._api_key = api_key or ""
        self.system_prompt = system_prompt or DEFAULT_SYSTEM_PROMPT
        self.knowledge = knowledge
        self.contact = {key: value for key, value in (contact or {}).items() if value}
        self.first_token_timeout = float(first_token_timeout)
        self.total_timeout = float(total_timeout)
        self.max_retry_wait = float(max_retry_wait)
        self.max_history = int(max_history)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.total_timeout, connect=min(connect_timeout, self.total_timeout)),
            transport=transport,
        )

    def __repr__(self):
        return f"OpenAIConsultant(url={_safe_url(self.url)!r}, model={self.model!r})"

    async def aclose(self):
        """Close the HTTP client (and its pooled connections)."""
        await self._client.aclose()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc_info):
        await self.aclose()

    # -- request -------------------------------------------------------------------------------

    def system_message(self, question, lang=None):
        """The system message: the prompt, the contacts, and the knowledge sections matching ``question``
        (from the knowledge file for the widget's language ``lang``)."""
        parts = [self.system_prompt.strip()]
        if self.contact:
            labels = {"email": "Email", "phone": "Phone", "url": "Contact page"}
            lines = [f"- {labels.get(key, key)}: {value}" for key, value in self.contact.items()]
            parts.append("The team can be reached at:\n" + "\n".join(lines))
        if self.knowledge is not None and question:
            matches = self.knowledge.for_language(lang).search(question, limit=3)
            if matches:
                sections = "\n\n".join(f"## {m.section.title}\n{m.section.answer}" for m in matches)
                parts.append(f"{_KNOWLEDGE_INTRO}\n\n{sections}")
        return "\n\n".join(parts)

    def messages(self, history, lang=None):
        """``history`` as chat messages: the system message, then visitor → user, consultant → assistant."""
        recent = [item for item in history if str(item.get("text") or "").strip()][-self.max_history:]
        question = next((item["text"] for item in reversed(recent) if item.get("author") == "visitor"), "")
        messages = [{"role": "system", "content": self.system_message(question, lang)}]
        for item in recent:
            role = "user" if item.get("author") == "visitor" else "assistant"
            messages.append({"role": role, "content": str(item["text"])})
        return messages

    def request_body(self, history, lang=None):
        body = {"model": self.model, "messages": self.messages(history, lang), "stream": True}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        return body

    def _headers(self):
        headers = {"Accept": "text/event-stream"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    # -- reply ---------------------------------------------------------------------------------

    async def reply(self, history, lang=None):
        body = self.request_body(history, lang)
        clock = asyncio.get_running_loop().time
        deadline = clock() + self.total_timeout
        retried = False
        while True:
            response = await self._send(body, clock() + self.first_token_timeout, deadline)
            wait = None
            try:
                if response.status_code == 429 and not retried:
                    wait = _retry_after(response.headers)
                    if wait > self.max_retry_wait or clock() + wait >= deadline:
                        raise RateLimited(f"rate limited by the model server (asked to retry after {wait:g} s)")
                elif response.status_code != 200:
                    raise await self._status_error(response, deadline)
                else:
                    pieces = self._pieces(response, clock() + self.first_token_timeout, deadline)
                    try:
                        async for piece in pieces:
                            yield piece
                    finally:
                        await pieces.aclose()
                    return
            finally:
                await response.aclose()
            retried = True
            log.info("model server rate limited the request; retrying in %g s", wait)
            await asyncio.sleep(wait)

    async def _send(self, body, first_deadline, deadline):
        """Send the request; return the streaming response once its headers are in."""
        request = self._client.build_request("POST", self.url, json=body, headers=self._headers())
        limit = min(first_deadline, deadline)
        try:
            async with asyncio.timeout_at(limit):
                return await self._client.send(request, stream=True)
        except TimeoutError:
            raise self._timeout(first=limit == first_deadline) from None
        except httpx.TimeoutException:
            raise ConsultantTimeout(f"the model server at {_safe_url(self.base_url)} did not answer in time") from None
        except httpx.HTTPError as error:
            raise UpstreamError(
                f"cannot reach the model server at {_safe_url(self.base_url)} ({type(error).__name__})"
            ) from None

    def _timeout(self, first):
        if first:
            return ConsultantTimeout(f"the model did not start answering within {self.first_token_timeout:g} s")
        return ConsultantTimeout(f"the reply took longer than {self.total_timeout:g} s")

    async def _status_error(self, response, deadline):
        """The ConsultantError for a non-200 response (reads a little of the body for the server's reason)."""
        status = response.status_code
        if status in (401, 403):
            if status == 401:
                return AuthenticationFailed("authentication failed (check the API key)")
            return AuthenticationFailed("access denied by the model server (HTTP 403; check the API key and its permissions)")
        detail = await self._error_detail(response, deadline)
        suffix = f": {detail}" if detail else ""
        if status == 429:
            return RateLimited(f"rate limited by the model server (HTTP 429){suffix}")
        if status == 404:
            return UpstreamError(
                f"the model server has no {_safe_url(self.url)} or no model {self.model!r} (HTTP 404){suffix}"
            )
        if status >= 500:
            return UpstreamError(f"the model server failed (HTTP {status}){suffix}")
        return UpstreamError(f"the model server refused the request (HTTP {status}){suffix}")

    async def _error_detail(self, response, deadline):
        try:
            async with asyncio.timeout_at(min(deadline, asyncio.get_running_loop().time() + 2.0)):
                raw = await response.aread()
        except (TimeoutError, httpx.HTTPError):
            return ""
        text = raw[:4000].decode("utf-8", "replace")
        try:
            data = json.loads(text)
        except ValueError:
            message = text
        else:
            error = data.get("error") if isinstance(data, dict) else None
            if isinstance(error, dict):
                message = error.get("message") or ""
            elif isinstance(error, str):
                message = error
            elif isinstance(data, dict):
                message = data.get("message") or data.get("detail") or ""
            else:
                message = ""
        return self._redact(" ".join(str(message).split()))[:200]

    def _redact(self, text):
        if self._api_key and len(self._api_key) >= 4:
            text = text.replace(self._api_key, "[redacted]")
        return text

    async def _pieces(self, response, first_deadline, deadline):
        """Yield content pieces from a 200 response (an SSE stream, or one JSON body if the server ignored stream)."""
        content_type = response.headers.get("content-type", "")
        if "json" in content_type and "event-stream" not in content_type:
            text = await self._read_all(response, first_deadline, deadline)
            if text:
                yield text
                return
            raise UpstreamError("the model server sent an empty reply")
        received = False
        finished = False
        lines = response.aiter_lines()
        data = []
        try:
            while True:
                limit = deadline if received else min(first_deadline, deadline)
                try:
                    async with asyncio.timeout_at(limit):
                        line = await anext(lines)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise self._timeout(first=not received and limit == first_deadline) from None
                except httpx.TimeoutException:
                    raise self._timeout(first=not received) from None
                except httpx.HTTPError:
                    raise ReplyCutOff("the reply was cut off") from None
                if line:
                    name, _, value = line.partition(":")
                    if name == "data":
                        data.append(value[1:] if value.startswith(" ") else value)
                    continue  # comments (":..."), "event:", "id:", "retry:" lines are ignored
                if not data:
                    continue
                event, data = "\n".join(data), []
                if event.strip() == "[DONE]":
                    finished = True
                    break
                piece, done = self._parse_event(event)
                finished = finished or done
                if piece:
                    received = True
                    yield piece
            if data and not finished:  # a last event without the closing blank line
                event = "\n".join(data)
                if event.strip() == "[DONE]":
                    finished = True
                else:
                    piece, finished = self._parse_event(event)
                    if piece:
                        received = True
                        yield piece
        finally:
            await lines.aclose()
        if not finished:
            raise ReplyCutOff("the reply was cut off")
        if not received:
            raise UpstreamError("the model server sent an empty reply")

    def _parse_event(self, event):
        """``(content piece or "", finished?)`` from one SSE data payload."""
        try:
            data = json.loads(event)
        except ValueError:
            raise UpstreamError("the model server sent an event that is not JSON") from None
        if not isinstance(data, dict):
            raise UpstreamError("the model server sent an unexpected event")
        if data.get("error"):
            error = data["error"]
            message = error.get("message", "") if isinstance(error, dict) else str(error)
            raise UpstreamError(f"the model server reported an error: {self._redact(message)[:200]}")
        choices = data.get("choices") or []
        if not choices or not isinstance(choices[0], dict):
            return "", False
        choice = choices[0]
        delta = choice.get("delta") or {}
        content = delta.get("content") if isinstance(delta, dict) else None
        return (content if isinstance(content, str) else ""), bool(choice.get("finish_reason"))

    async def _read_all(self, response, first_deadline, deadline):
        try:
            async with asyncio.timeout_at(min(first_deadline, deadline)):
                raw = await response.aread()
        except TimeoutError:
            raise self._timeout(first=True) from None
        except httpx.HTTPError:
            raise ReplyCutOff("the reply was cut off") from None
        try:
            data = json.loads(raw)
            return data["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise UpstreamError("the model server sent a reply this consultant cannot read") from None


def _retry_after(headers):
    """Seconds to wait from a ``Retry-After`` header (seconds or HTTP date); 1 s when absent or unreadable."""
    value = (headers.get("retry-after") or "").strip()
    if not value:
        return 1.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    return max(0.0, when.timestamp() - time.time())


def _safe_url(url):
    """``url`` without user info, query or fragment, for messages and logs."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
