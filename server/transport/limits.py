"""Abuse limits as pure objects: a per-connection message rate and a per-address connection count.

No Quart, no clock of their own: the socket passes ``now`` (``time.monotonic()``), so tests drive
them with a fake clock. docs/security.md gives the defaults and which of them are wired.
"""

import ipaddress

from protocol import ratelimit

WARNINGS = 3               # rate_limited error frames before the socket is closed with 1008

OK = "ok"
WARN = "warn"
CLOSE = "close"


class RateLimiter:
    """A token bucket for one connection, with strikes.

    ``rate`` tokens are added every ``per`` seconds, up to ``burst``; each accepted frame takes one.
    ``check(now)`` answers ``"ok"`` (accept), ``"warn"`` (refuse this frame with a ``rate_limited``
    error frame; at most ``warnings`` times), or ``"close"`` (the client kept going after the
    warnings: close with 1008). Strikes are forgiven once the bucket has filled up again, that is
    after the client stayed within the rate long enough to earn a whole burst back.
    """

    def __init__(self, rate=ratelimit.MESSAGES, per=ratelimit.PER, burst=ratelimit.BURST, warnings=WARNINGS):
        if rate <= 0 or per <= 0 or burst < 1 or warnings < 0:
            raise ValueError("rate and per must be positive, burst at least 1, warnings not negative")
        self.rate = rate
        self.per = per
        self.burst = burst
        self.warnings = warnings
        self.bucket = ratelimit.TokenBucket(rate, per, burst)  # the widget paces its outbox with the same bucket
        self.strikes = 0

    @property
    def tokens(self):
        return self.bucket.tokens

    def _forgive(self):
        if self.bucket.full:
            self.strikes = 0

    def allow(self, now):
        """Take a token if there is one; True when the frame may pass."""
        self.bucket.wait(now)  # refills up to now
        self._forgive()
        return self.bucket.take(now)

    def check(self, now):
        """``"ok"``, ``"warn"`` or ``"close"`` for one frame arriving at ``now``."""
        if self.allow(now):
            return OK
        self.strikes += 1
        return WARN if self.strikes <= self.warnings else CLOSE

    def retry_after(self, now):
        """Seconds until the next token (0 when one is available): for the error frame."""
        return self.bucket.wait(now)


class AddressCounter:
    """Open connections per client address; ``acquire`` refuses beyond ``max_per_address``.

    Pass addresses through ``address_key`` so one IPv6 host cannot take a fresh address per socket.
    Behind a reverse proxy the peer address is the proxy's: run Uvicorn with ``forwarded_allow_ips``
    set to the proxy so the client's address is used, or this limit counts the proxy.
    """

    def __init__(self, max_per_address):
        if max_per_address < 1:
            raise ValueError("max_per_address must be at least 1")
        self.max_per_address = max_per_address
        self.counts = {}

    def full(self, address):
        """True when ``acquire`` would refuse this address now (nothing is taken)."""
        return self.counts.get(address, 0) >= self.max_per_address

    def acquire(self, address):
        if self.full(address):
            return False
        self.counts[address] = self.counts.get(address, 0) + 1
        return True

    def release(self, address):
        count = self.counts.get(address, 0)
        if count <= 1:
            self.counts.pop(address, None)
        else:
            self.counts[address] = count - 1

    def __len__(self):
        return len(self.counts)


def address_key(address):
    """The unit that ``AddressCounter`` counts: an IPv4 address, or the /64 of an IPv6 address.

    An IPv6 host usually has a whole /64 to itself; IPv4-mapped IPv6 addresses count as IPv4.
    Anything that is not an IP address (a Unix socket path, None) is returned as a string.
    """
    try:
        ip = ipaddress.ip_address(str(address).split("%", 1)[0])
    except ValueError:
        return str(address)
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
