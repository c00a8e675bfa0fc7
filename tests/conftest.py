from pathlib import Path

import pytest

from server.app import create_app
from server.config import Config

OWN_ORIGIN = "http://localhost"
ROOT = Path(__file__).resolve().parent.parent


# The test client is one address for every test: the per-address budgets are opened wide unless a
# test sets them (as e2e/server_process.py does for the server in a subprocess).
WIDE_BUDGETS = {"address_messages_per_minute": 1_000_000, "address_bytes_per_minute": 1 << 40,
                "address_conversations_per_hour": 1_000_000, "address_replies_per_minute": 1_000_000,
                "address_waiting_replies": 1000}


# Apps made here rank by words unless a test says otherwise: one made with a fresh asset_cache would
# embed the demo files' 1,472 examples in the background (18 s of CPU). The semantic ranker has its own
# tests (test_semantic.py), and the servers of e2e/ run with it, as deployed.
APP_DEFAULTS = {"store": "memory", "ranker": "words", **WIDE_BUDGETS}


@pytest.fixture
def make_app():
    def make(**settings):
        return create_app(Config(**{**APP_DEFAULTS, **settings}))
    return make


@pytest.fixture
def app(make_app):
    return make_app(allow_origins=["https://shop.example.com", "https://*.example.org"])


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def redis_server():
    """One real redis-server for the session's tests (tests/redis_server.py); skipped when it cannot be
    installed. Tests that stop, kill or restart Redis start their own ``RedisServer``."""
    from redis_server import RedisServer, require_redis

    require_redis()
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server):
    """The URL of an empty database (FLUSHDB) on the session's Redis, for this test."""
    if not redis_server.running:  # someone stopped it: the next test still gets one
        redis_server.restart()
    redis_server.flush(0)
    return redis_server.url(0)


def pytest_sessionstart(session):
    """The demo files' example vectors, embedded on the second core while the first tests run: on a
    fresh machine that is 18 s of CPU the first semantic test would otherwise wait for."""
    import threading

    def warm():
        from server.consultants import KnowledgeConsultant
        from server.consultants.semantic import SemanticUnavailable, shared_embedder

        try:
            KnowledgeConsultant(ROOT / "knowledge.md", embedder=shared_embedder(ROOT / "var" / "compressed"))
        except (SemanticUnavailable, ValueError):
            pass  # the tests that need it say why

    threading.Thread(target=warm, name="warm embeddings", daemon=True).start()


@pytest.fixture(scope="session")
def embedder():
    """The semantic ranker's model, shared by the tests; example vectors cached where the server keeps them."""
    from server.consultants.semantic import shared_embedder

    return shared_embedder(ROOT / "var" / "compressed")
