"""Conversations: the service that stores and answers visitor messages, and the stores behind it."""

from .service import Conversations  # noqa: F401
from .store import MemoryStore, SqliteStore, Store  # noqa: F401
