"""The token bucket that meters visitor messages, on both sides of the socket.

The server refuses messages over the rate (``server/transport/limits.py``); the widget paces its
outbox with the same bucket and the limits announced in ``welcome``, so a well-behaved widget never
meets the server's limit, even when it flushes a long outbox after an outage.

``rate`` tokens are added every ``per`` seconds, up to ``burst``; each message takes one. The caller
passes ``now`` (any monotonic seconds); a clock stepping back earns nothing.
"""

# The one place these defaults are written: the server's settings and the widget's pacing read them.
MESSAGES = 20   # messages ...
PER = 10        # ... per this many seconds, sustained
BURST = 10      # messages accepted at once after a quiet spell


class TokenBucket:
    def __init__(self, messages=MESSAGES, per=PER, burst=BURST):
        self._updated = None
        self.configure(messages, per, burst)

    def configure(self, messages, per, burst):
        self.rate = float(messages) / float(per)
        self.burst = float(burst)
        self.tokens = self.burst

    def _refill(self, now):
        if self._updated is not None and now > self._updated:
            self.tokens = min(self.burst, self.tokens + (now - self._updated) * self.rate)
        if self._updated is None or now > self._updated:
            self._updated = now

    @property
    def full(self):
        return self.tokens >= self.burst

    def take(self, now, amount=1.0):
        """Take ``amount`` tokens (one message; or its bytes, for a byte budget) if there are that many:
        True when it may go now."""
        self._refill(now)
        if self.tokens >= amount:
            self.tokens -= amount
            return True
        return False

    def wait(self, now, amount=1.0):
        """Seconds until ``amount`` tokens are there (0 when they are now)."""
        self._refill(now)
        return 0.0 if self.tokens >= amount else (amount - self.tokens) / self.rate
