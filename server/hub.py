"""Bookkeeping of open sockets: counts for health, and the draining flag for shutdown."""

import itertools
import time


class Hub:
    """The set of open chat connections of one server process."""

    def __init__(self, max_connections):
        self.max_connections = max_connections
        self.open = {}  # connection id -> start time
        self.accepted_total = 0
        self.rejected_total = 0
        self.draining = False
        self._ids = itertools.count(1)

    @property
    def full(self):
        return len(self.open) >= self.max_connections

    @property
    def accepting(self):
        return not self.draining and not self.full

    def register(self):
        connection_id = f"c{next(self._ids)}"
        self.open[connection_id] = time.monotonic()
        self.accepted_total += 1
        return connection_id

    def unregister(self, connection_id):
        started = self.open.pop(connection_id, None)
        return time.monotonic() - started if started is not None else 0.0
