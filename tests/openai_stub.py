"""A tiny OpenAI-compatible chat-completions server for tests, on real loopback HTTP.

It is a hand-written HTTP/1.1 server on ``asyncio.start_server`` so a test controls exactly what goes
over the wire: server-sent events in chunked transfer encoding, pauses between pieces, error statuses,
and connections cut in the middle of a body. Every response says ``Connection: close``.

Modes (``OpenAIStub(mode=...)``):

* ``stream``: a role delta, one event per piece, a ``finish_reason`` event, ``data: [DONE]``.
  With ``gate_before_last=True`` it holds the last piece back until ``stub.gate`` is set (or 5 s pass)
  and only then sets ``stub.sent_last``.
* ``trickle``: like ``stream`` but sleeps ``delay`` seconds before every piece.
* ``json``: a plain (non-streamed) chat-completion JSON body, as servers that ignore ``stream`` send.
* ``401``, ``500``: an error status with an OpenAI-style JSON error body.
* ``429-then-stream``: 429 with ``Retry-After: 1`` on the first request, then ``stream``.
* ``429-long``: 429 with ``Retry-After: 30`` on every request.
* ``cut``: the first two pieces, then the connection is closed in the middle of the chunked body.
* ``no-done``: the first two pieces, then a properly ended body that never sent ``[DONE]``.
* ``slow-first``: headers and a role-only delta at once, then ``delay`` seconds before the first piece.
* ``slow-headers``: ``delay`` seconds before even the status line.

Requests are recorded in ``stub.requests`` (method, path, lowercase headers, parsed JSON body);
``stub.disconnected`` is set when a client closes its connection before the response ended.
"""

import asyncio
import contextlib
import json
from dataclasses import dataclass


@dataclass
class Request:
    method: str
    path: str
    headers: dict
    body: dict


class OpenAIStub:
    def __init__(self, mode="stream", pieces=("Hello", ", visitor", "!"), gate_before_last=False, delay=5.0):
        self.mode = mode
        self.pieces = list(pieces)
        self.gate_before_last = gate_before_last
        self.delay = delay
        self.requests = []
        self.gate = asyncio.Event()
        self.sent_last = False
        self.disconnected = asyncio.Event()
        self._tasks = set()
        self._server = None
        self.port = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self):
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info):
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    # -- HTTP ----------------------------------------------------------------------------------

    async def _handle(self, reader, writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        watcher = None
        try:
            request = await self._read_request(reader)
            self.requests.append(request)
            watcher = asyncio.create_task(self._watch_eof(reader))
            await self._respond(writer, len(self.requests))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if watcher is not None:
                watcher.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _watch_eof(self, reader):
        """The client sends nothing after its request, so a read returning means it hung up."""
        with contextlib.suppress(ConnectionError):
            await reader.read(1)
        self.disconnected.set()

    async def _read_request(self, reader):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *header_lines = head.strip("\r\n").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        raw = await reader.readexactly(length) if length else b""
        return Request(method, path, headers, json.loads(raw) if raw else {})

    @staticmethod
    def _head(status, reason, headers):
        lines = [f"HTTP/1.1 {status} {reason}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send_json(self, writer, status, reason, payload, headers=None):
        body = json.dumps(payload).encode()
        all_headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
        all_headers.update(headers or {})
        writer.write(self._head(status, reason, all_headers) + body)
        await writer.drain()

    async def _start_stream(self, writer):
        writer.write(self._head(200, "OK", {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked"}))
        await self._event(writer, {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})

    @staticmethod
    async def _chunk(writer, text):
        data = text.encode()
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()

    async def _event(self, writer, payload):
        await self._chunk(writer, f"data: {json.dumps(payload)}\n\n")

    async def _piece(self, writer, text):
        await self._event(writer, {
            "id": "chatcmpl-stub", "object": "chat.completion.chunk", "model": "stub",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
        })

    async def _finish(self, writer):
        await self._event(writer, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        await self._chunk(writer, "data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _respond(self, writer, number):
        mode = self.mode
        if mode == "429-then-stream":
            if number == 1:
                await self._send_json(writer, 429, "Too Many Requests",
                                      {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                                      {"Retry-After": "1"})
                return
            mode = "stream"
        if mode == "429-long":
            await self._send_json(writer, 429, "Too Many Requests",
                                  {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                                  {"Retry-After": "30"})
        elif mode == "401":
            await self._send_json(writer, 401, "Unauthorized",
                                  {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
        elif mode == "500":
            key = self.requests[-1].headers.get("authorization", "").removeprefix("Bearer ")
            await self._send_json(writer, 500, "Internal Server Error",
                                  {"error": {"message": f"model crashed while serving key {key}", "type": "server_error"}})
        elif mode == "json":
            await self._send_json(writer, 200, "OK", {
                "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(self.pieces)},
                             "finish_reason": "stop"}],
            })
        elif mode == "slow-headers":
            await asyncio.sleep(self.delay)
            await self._start_stream(writer)
        elif mode in ("stream", "trickle", "slow-first"):
            await self._start_stream(writer)
            for index, piece in enumerate(self.pieces):
                last = index == len(self.pieces) - 1
                if mode == "trickle" or (mode == "slow-first" and index == 0):
                    await asyncio.sleep(self.delay)
                if last and self.gate_before_last:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.gate.wait(), 5.0)
                if last:
                    self.sent_last = True
                await self._piece(writer, piece)
            await self._finish(writer)
        elif mode in ("cut", "no-done"):
            await self._start_stream(writer)
            for piece in self.pieces[:2]:
                await self._piece(writer, piece)
            if mode == "no-done":
                writer.write(b"0\r\n\r\n")
                await writer.drain()
            else:
                writer.close()  # mid-body: no final chunk, no [DONE]
        else:
            raise ValueError(f"unknown stub mode {mode!r}")
