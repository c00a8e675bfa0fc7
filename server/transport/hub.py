"""Bookkeeping of open sockets: counts for health (widgets' failure reports too), and the draining flag."""

import asyncio
import itertools
import time

from .limits import AddressCounter
from .reports import FailureReports


class Hub:
    """The set of open chat connections of one server process."""

    def __init__(self, max_connections, max_per_address):
        self.max_connections = max_connections
        self.addresses = AddressCounter(max_per_address)
        self.open = {}  # connection id -> start time
        self.accepted_total = 0
        self.rejected_total = 0
        self.draining = False
        self.store_trouble = None  # why the store does not answer (kept by the app's store watch), or None
        self.loop_lag = 0.0  # seconds, measured by watch_loop_lag
        self.failure_reports = FailureReports()  # what widgets reported about failed attempts
        self._ids = itertools.count(1)

    @property
    def full(self):
        return len(self.open) >= self.max_connections

    @property
    def accepting(self):
        return not self.draining and not self.full and self.store_trouble is None

    def register(self):
        connection_id = f"c{next(self._ids)}"
        self.open[connection_id] = time.monotonic()
        self.accepted_total += 1
        return connection_id

    def unregister(self, connection_id):
        started = self.open.pop(connection_id, None)
        return time.monotonic() - started if started is not None else 0.0


async def watch_loop_lag(hub, every=0.5, report=None):
    """Keeps ``hub.loop_lag``: how late a sleep wakes up, a direct measure of overload. ``report`` gets
    each measure too (the metrics' gauge: with several workers, /metrics is answered by one of them and
    reads the others' from their files, so each must write its own as it goes)."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(every)
        hub.loop_lag = max(0.0, loop.time() - started - every)
        if report is not None:
            report(hub.loop_lag)
