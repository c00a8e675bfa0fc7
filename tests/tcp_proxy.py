"""Loopback TCP proxies that misbehave the way real ones do, for tests and e2e tests.

- ``IdleCuttingProxy`` cuts connections idle too long, as nginx's ``proxy_read_timeout`` does.
- ``Relay`` completes the WebSocket upgrade and then misbehaves, as corporate and antivirus proxies
  do, in a mode that can change while it runs: ``pass`` forwards both ways; ``withhold`` forwards the
  server's ``101 Switching Protocols`` head and then swallows every byte the server sends (the
  connection stays open); ``cut`` closes both sides ``cut_after`` seconds after the 101. Plain HTTP
  (any response but 101) passes untouched in every mode, like a proxy that only breaks WebSockets.

Both listen on ``127.0.0.1:port`` (0 picks a free port). In async tests use ``async with`` (the
proxy runs on the test's loop); in sync tests (Playwright's sync API) use ``with`` or
``start()``/``stop()``, which run it on an event loop in a background thread::

    with Relay(server.port, mode="withhold") as relay:
        page.goto(relay.url)          # the page loads; its socket opens and then hears nothing
        relay.set_mode("pass")        # thread-safe; new connections work again
"""

import asyncio
import threading
import time

PASS, WITHHOLD, CUT = "pass", "withhold", "cut"
MODES = (PASS, WITHHOLD, CUT)
CHUNK = 65536
HEAD_END = b"\r\n\r\n"


async def _pump(reader, writer, on_bytes=None):
    """Copy ``reader`` to ``writer`` until end of stream."""
    while data := await reader.read(CHUNK):
        if on_bytes:
            on_bytes()
        writer.write(data)
        await writer.drain()


async def _finish(tasks, writers):
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)  # a reset side is expected, not an error
    for writer in writers:
        writer.close()


class LoopbackProxy:
    """Accepts on ``127.0.0.1:port`` and hands each connection to ``_forward`` (subclasses) as its own task."""

    def __init__(self, upstream_port, upstream_host="127.0.0.1", port=0):
        self.upstream = (upstream_host, upstream_port)
        self.port = port
        self.server = None
        self.connections = set()  # the task of each open connection
        self._loop = None
        self._thread = None
        self._stopped = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self):
        self._loop = asyncio.get_running_loop()
        self.server = await asyncio.start_server(self._track, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info):
        self.server.close()
        await _finish(list(self.connections), [])
        await self.server.wait_closed()

    def start(self, timeout=5):
        """Run on an event loop in a background thread (for synchronous tests); returns once listening."""
        ready = threading.Event()
        failure = []

        async def serve():
            self._stopped = asyncio.Event()
            try:
                async with self:
                    ready.set()
                    await self._stopped.wait()
            except Exception as error:  # reported to the starting thread
                failure.append(error)
                ready.set()

        self._thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True, name=type(self).__name__)
        self._thread.start()
        if not ready.wait(timeout) or failure:
            raise RuntimeError(f"{type(self).__name__} did not start: {failure or 'timed out'}")
        return self

    def stop(self, timeout=5):
        """Stop the background loop started by ``start()``: every proxied connection is closed."""
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def call_in_loop(self, function, *args):
        """Run ``function(*args)`` on the proxy's loop: now when called there, else as soon as it can."""
        if self._thread is None or threading.current_thread() is self._thread:
            function(*args)
        else:
            self._loop.call_soon_threadsafe(function, *args)

    def cut_all(self):
        """Drop every proxied connection at once (both sides see the TCP connection end)."""
        self.call_in_loop(lambda: [task.cancel() for task in list(self.connections)])

    async def _track(self, reader, writer):
        task = asyncio.current_task()
        self.connections.add(task)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            await self._forward(reader, writer, upstream_reader, upstream_writer)
        except (OSError, asyncio.CancelledError):
            # Nothing listens upstream, or the connection was cut on purpose (cut_all, cut mode, exit).
            # Ending quietly: Python 3.11's stream server logs a cancelled handler task as an error.
            writer.close()
        finally:
            self.connections.discard(task)

    async def _forward(self, client_reader, client_writer, upstream_reader, upstream_writer):
        raise NotImplementedError


class IdleCuttingProxy(LoopbackProxy):
    """Forwards to an upstream port; closes both sides after ``idle`` s without bytes either way."""

    def __init__(self, upstream_port, idle, upstream_host="127.0.0.1", port=0):
        super().__init__(upstream_port, upstream_host, port)
        self.idle = idle

    async def _forward(self, client_reader, client_writer, upstream_reader, upstream_writer):
        last_bytes_at = time.monotonic()

        def saw_bytes():
            nonlocal last_bytes_at
            last_bytes_at = time.monotonic()

        pumps = [asyncio.create_task(_pump(client_reader, upstream_writer, saw_bytes)),
                 asyncio.create_task(_pump(upstream_reader, client_writer, saw_bytes))]
        try:
            # The proxy's own idle timer: wakes when a side closes or the quiet deadline comes.
            while True:
                quiet_left = last_bytes_at + self.idle - time.monotonic()
                if quiet_left <= 0:
                    break
                done, _ = await asyncio.wait(pumps, timeout=quiet_left, return_when=asyncio.FIRST_COMPLETED)
                if done:
                    break
        finally:
            await _finish(pumps, [client_writer, upstream_writer])


class _Link:
    """One relayed connection: its mode (fixed when accepted, unless switched) and its upgrade."""

    def __init__(self, task, mode):
        self.task = task
        self.mode = mode
        self.upgraded_at = None  # loop time the 101 head went through
        self.cut_timer = None


class Relay(LoopbackProxy):
    """Forwards to an upstream port, then misbehaves after the WebSocket upgrade as ``mode`` says.

    ``mode`` is ``pass``, ``withhold`` or ``cut`` (see the module's docstring); ``cut_after`` is the
    seconds from the 101 to the cut. Counters, readable from any thread: ``accepted`` (connections),
    ``upgrades`` (connections whose 101 went through), ``withheld_bytes`` (server bytes swallowed).
    """

    def __init__(self, upstream_port, mode=PASS, cut_after=0.2, upstream_host="127.0.0.1", port=0):
        super().__init__(upstream_port, upstream_host, port)
        self.mode = _checked(mode)
        self.cut_after = cut_after
        self.accepted = 0
        self.upgrades = 0
        self.withheld_bytes = 0
        self._links = set()

    @property
    def socket_url(self):
        """The chat socket's URL through the relay (for ``--socket-url``)."""
        return f"ws://127.0.0.1:{self.port}/ws"

    def set_mode(self, mode, existing=False):
        """New connections get ``mode``; with ``existing``, open ones switch too. Safe from any thread.

        Switching an open connection from ``withhold`` back to ``pass`` resumes forwarding mid-stream:
        the bytes swallowed meanwhile are lost, so its WebSocket stream is corrupt from then on.
        """
        self.mode = _checked(mode)
        if existing:
            self.call_in_loop(self._switch_links, mode)

    def _switch_links(self, mode):
        for link in self._links:
            link.mode = mode
            if mode == CUT and link.upgraded_at is not None:
                self._schedule_cut(link)

    def _schedule_cut(self, link):
        if link.cut_timer is None:
            link.cut_timer = asyncio.get_running_loop().call_later(self.cut_after, link.task.cancel)

    async def _forward(self, client_reader, client_writer, upstream_reader, upstream_writer):
        self.accepted += 1
        link = _Link(asyncio.current_task(), self.mode)
        self._links.add(link)
        pumps = [asyncio.create_task(_pump(client_reader, upstream_writer)),
                 asyncio.create_task(self._downstream(link, upstream_reader, client_writer))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._links.discard(link)
            if link.cut_timer is not None:
                link.cut_timer.cancel()
            await _finish(pumps, [client_writer, upstream_writer])

    async def _downstream(self, link, upstream_reader, client_writer):
        """Server to client: the response head always; after a 101, what the link's mode allows."""
        try:
            head = await upstream_reader.readuntil(HEAD_END)
        except asyncio.IncompleteReadError as error:  # the server closed before a whole head
            client_writer.write(error.partial)
            return
        except asyncio.LimitOverrunError:  # not HTTP as we know it: relay it untouched
            head = b""
        client_writer.write(head)
        await client_writer.drain()
        if head.split(b" ", 2)[1:2] != [b"101"]:
            await _pump(upstream_reader, client_writer)
            return
        self.upgrades += 1
        link.upgraded_at = asyncio.get_running_loop().time()
        if link.mode == CUT:
            self._schedule_cut(link)
        while data := await upstream_reader.read(CHUNK):
            if link.mode == WITHHOLD:
                self.withheld_bytes += len(data)  # read and discarded: the server sees a healthy reader
                continue
            client_writer.write(data)
            await client_writer.drain()


def _checked(mode):
    if mode not in MODES:
        raise ValueError(f"relay mode {mode!r}: expected one of {', '.join(MODES)}")
    return mode
