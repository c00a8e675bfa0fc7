"""A loopback TCP proxy that cuts connections idle too long, as nginx's proxy_read_timeout does."""

import asyncio
import time


class IdleCuttingProxy:
    """Forwards 127.0.0.1:``port`` to an upstream port; closes both sides after ``idle`` s without bytes."""

    def __init__(self, upstream_port, idle, upstream_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.idle = idle
        self.port = None
        self.server = None
        self.connections = set()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._track, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info):
        self.server.close()
        for task in list(self.connections):
            task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
        await self.server.wait_closed()

    def cut_all(self):
        """Drop every proxied connection at once (both sides see the TCP connection end)."""
        for task in list(self.connections):
            task.cancel()

    async def _track(self, reader, writer):
        task = asyncio.current_task()
        self.connections.add(task)
        try:
            await self._forward(reader, writer)
        finally:
            self.connections.discard(task)

    async def _forward(self, client_reader, client_writer):
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        last_bytes_at = time.monotonic()

        async def pump(reader, writer):
            nonlocal last_bytes_at
            while data := await reader.read(65536):
                last_bytes_at = time.monotonic()
                writer.write(data)
                await writer.drain()

        pumps = [asyncio.create_task(pump(client_reader, upstream_writer)),
                 asyncio.create_task(pump(upstream_reader, client_writer))]
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
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)  # a reset side is expected, not an error
            for writer in (client_writer, upstream_writer):
                writer.close()
