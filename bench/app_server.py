"""Our chat app (``server.app.create_app``) under another ASGI server stack, for bench/capacity.py comparisons.

    .venv/bin/python bench/app_server.py --stack uvicorn-wsproto --port 0 --allow-origin http://load.test
    stacks: uvicorn-sansio (what `chat-widget serve` runs), uvicorn-wsproto, hypercorn

Prints ``serving http://HOST:PORT/`` once listening. Memory store, log level warning, and the connection
limit raised to 20,000 so that 10,000 sockets fit whatever the default.
"""

import argparse
import asyncio
import gc
import os
import resource
import signal
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from server.app import create_app  # noqa: E402
from server.config import Config  # noqa: E402


def make_config(args):
    # The environment's CHAT_WIDGET_* settings apply (e.g. CHAT_WIDGET_STORE), as for `chat-widget serve`.
    return Config.from_environment(host=args.host, port=args.port, allow_origins=args.allow_origin,
                                   log_level="warning", max_connections=20_000,
                                   store=None if "CHAT_WIDGET_STORE" in os.environ else "memory")


async def run_uvicorn(config, ws):
    import uvicorn

    from server.cli import uvicorn_config

    options = uvicorn_config(create_app(config), config)
    options.ws = ws
    if os.environ.get("BENCH_WS_PING") == "off":  # experiments: no protocol pings from the server
        options.ws_ping_interval = None
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((config.host, config.port))
    server = uvicorn.Server(options)
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        await asyncio.sleep(0.02)
    if not os.environ.get("BENCH_GC"):  # the server's own policy (CHAT_WIDGET_GC), as `chat-widget serve` applies it
        from server import gcpolicy

        gcpolicy.install(asyncio.get_running_loop(), config.gc)
    print(f"app_server: serving http://{config.host}:{listener.getsockname()[1]}/ (uvicorn ws={ws})", flush=True)
    await serving


async def run_hypercorn(config):
    from hypercorn.asyncio import serve
    from hypercorn.config import Config as HypercornConfig

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((config.host, config.port))
    options = HypercornConfig()
    options.bind = [f"fd://{listener.fileno()}"]
    options.websocket_max_message_size = config.max_message_bytes
    options.accesslog = None
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    serving = asyncio.create_task(serve(create_app(config), options, shutdown_trigger=stop.wait))
    await asyncio.sleep(0.5)
    print(f"app_server: serving http://{config.host}:{listener.getsockname()[1]}/ (hypercorn)", flush=True)
    await serving


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="uvicorn-sansio", choices=["uvicorn-sansio", "uvicorn-wsproto", "hypercorn"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--allow-origin", action="append", default=[])
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    config = make_config(args)
    if os.environ.get("BENCH_GC_LOG"):  # experiments: print every full (generation 2) collection's pause
        import time

        def gc_log(phase, info, started=[0.0]):
            if info["generation"] != 2:
                return
            if phase == "start":
                started[0] = time.perf_counter()
            else:
                print(f"gc: generation 2 pause {(time.perf_counter() - started[0]) * 1000:.0f} ms, "
                      f"{len(gc.get_objects())} objects tracked, {info['collected']} collected", flush=True)
        gc.callbacks.append(gc_log)
    # experiments: "off", "freeze", or "T0,T1,T2" thresholds, instead of the server's policy (server/gcpolicy.py)
    gc_mode = os.environ.get("BENCH_GC", "")
    if gc_mode == "off":
        gc.disable()
    elif gc_mode == "freeze":
        gc.freeze()
    elif gc_mode == "freeze-survivors":  # after every full collection, survivors leave the collector's view
        gc.callbacks.append(lambda phase, info: gc.freeze() if phase == "stop" and info["generation"] == 2 else None)
    elif gc_mode:
        gc.set_threshold(*(int(v) for v in gc_mode.split(",")))
    profile_to = os.environ.get("BENCH_PROFILE")  # experiments: cProfile the server into this file
    if profile_to:
        # Written every 2 s from the loop (Uvicorn ends the process by re-raising SIGTERM: no finally).
        import cProfile
        profiler = cProfile.Profile()
        original = run_uvicorn

        async def run_uvicorn(config, ws):  # noqa: F811 - the profiled variant
            async def dump():
                while True:
                    await asyncio.sleep(2)
                    profiler.dump_stats(profile_to)
                    profiler.enable()  # dump_stats stops the profiler (create_stats disables it)
            asyncio.get_running_loop().create_task(dump())
            await original(config, ws)
        profiler.enable()
    try:
        if args.stack == "hypercorn":
            asyncio.run(run_hypercorn(config))
        else:
            stack = {"uvicorn-sansio": "websockets-sansio", "uvicorn-wsproto": "wsproto"}[args.stack]
            asyncio.run(run_uvicorn(config, stack))
    finally:
        if profile_to:
            profiler.disable()
            profiler.dump_stats(profile_to)
