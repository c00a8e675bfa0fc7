"""``chat-widget serve --workers N``: N server processes on one port, one per core.

The parent binds the listening socket once and forks the workers, which all accept from it (the
kernel hands each new connection to one of them); it starts a worker again when one dies, and on
SIGTERM or SIGINT passes the signal on and waits for their graceful shutdown. Workers share nothing
in memory: conversations are in the Redis store (config refuses more than one worker without it),
a reply reaches a visitor connected to another worker through the store's bus, and a fallback
channel's requests reach the worker that owns it through forwarding. ``/metrics`` adds up every
worker (prometheus-client's multiprocess mode, through ``PROMETHEUS_MULTIPROC_DIR``).
"""

import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

import click

log = logging.getLogger("chat_widget.workers")

RESTART_PAUSE = 1.0  # seconds before a dead worker is started again: a worker that dies at once must not spin


def bind(config):
    """The listening socket every worker accepts from."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((config.host, config.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(config):
    """Serve with ``config.workers`` processes until SIGTERM or SIGINT; returns the exit code."""
    metrics_dir = tempfile.mkdtemp(prefix="chat-widget-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # before anything imports prometheus_client
    from .app import check_store
    from .cli import announce

    try:
        asyncio.run(check_store(config))
        sock = bind(config)
    except OSError as error:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        click.echo(f"chat-widget: cannot listen on {config.host}:{config.port}: {error}", err=True)
        return 1
    except BaseException:  # a store that does not answer (ConfigError: the caller says so, exit 2)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        raise
    workers = {}  # pid -> worker number
    stopping = []
    failed = []   # workers that ended with an error once stopping

    def stop(signum, _frame):
        # Workers are in process groups of their own (a terminal's Ctrl-C reaches only this process):
        # each gets one SIGTERM, the graceful stop, whichever signal came here.
        stopping.append(signum)
        for pid in workers:
            _signal(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for number in range(config.workers):
        _start(workers, config, sock, number)
    # Connections wait in the socket's backlog until a worker is ready, so the address is usable now.
    announce(config, sock.getsockname()[1], f", {config.workers} workers")
    try:
        while workers:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            number = workers.pop(pid, None)
            _mark_dead(pid)
            if number is None:
                continue
            if stopping:
                # A worker stopped by the signal itself (told before its server took over the signals,
                # right after start) stopped as asked too.
                if os.waitstatus_to_exitcode(status) not in (0, -signal.SIGTERM, -signal.SIGINT):
                    failed.append(number)
                continue
            log.warning("worker %d (pid %d) ended with status %d; starting it again", number, pid, status)
            time.sleep(RESTART_PAUSE)
            if not stopping:
                _start(workers, config, sock, number)
    finally:
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if failed:
        log.warning("worker(s) %s did not stop cleanly", ", ".join(map(str, sorted(failed))))
    return 1 if failed else 0


def _start(workers, config, sock, number):
    """Fork worker ``number`` and register it, with SIGINT and SIGTERM held meanwhile: a signal arriving
    between the fork and the registration would miss the new worker, and the parent would wait on it
    forever."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        workers[_fork(config, sock, number, held)] = number
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _fork(config, sock, number, mask):
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    # The worker: a process group of its own, gone with the parent even if the parent is killed,
    # default signal handling (its server installs its own), then serve until told to stop.
    os.setpgid(0, 0)
    _end_with_parent(parent)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    code = 0
    try:
        from .cli import run_server

        asyncio.run(run_server(config, sock=sock, announce_url=False))
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    except BaseException:
        log.exception("worker %d failed", number)
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _end_with_parent(parent):
    """SIGTERM when the parent dies (Linux ``prctl(PR_SET_PDEATHSIG)``): a supervisor that kills the parent
    with SIGKILL must not leave workers serving on their own."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before that took effect
        os._exit(0)


def _mark_dead(pid):
    """Its live gauges (open sockets) leave /metrics' sums with it."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def _signal(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
