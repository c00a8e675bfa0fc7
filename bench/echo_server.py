"""The floor for bench/capacity.py: a minimal WebSocket echo server written directly with ``websockets``.

One process, one asyncio loop, no framework: every text frame is sent back as it came; no
permessage-deflate (like our server); protocol pings every 20 s (like our server). Prints
``serving http://HOST:PORT/`` once listening, like ``chat-widget serve``.

    .venv/bin/python bench/echo_server.py [--host 127.0.0.1] [--port 0]
"""

import argparse
import asyncio
import resource
import signal

from websockets.asyncio.server import serve


async def echo(connection):
    try:
        async for message in connection:
            await connection.send(message)
    except Exception:  # noqa: BLE001 - a dropped client is not the server's problem
        pass


async def main(host, port):
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)
    # close_timeout=1: at shutdown the server waits this long per connection for a close handshake that
    # clients aborted by the load never send (10 s by default: half of a smoke run's time).
    async with serve(echo, host, port, compression=None, ping_interval=20, ping_timeout=20,
                     max_size=16 * 1024, server_header=None, close_timeout=1) as server:
        bound = server.sockets[0].getsockname()
        print(f"echo_server: serving http://{bound[0]}:{bound[1]}/ (websockets echo)", flush=True)
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(main(args.host, args.port))
