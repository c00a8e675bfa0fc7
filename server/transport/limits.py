"""Abuse limits as pure objects: a per-connection message rate and a per-address connection count
(the per-address budgets shared by all of an address's connections are in ``server/budgets.py``).

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
    ``check(now, shared_wait)`` answers ``"ok"`` (accept), ``"warn"`` (refuse this frame with a
    ``rate_limited`` error frame carrying ``retry_after(now)``), or ``"close"`` (close with 1008).
    ``shared_wait`` is how long a budget shared with other connections (the address's:
    ``server/budgets.py``) says to wait; the longer wait wins.

    A client may have up to ``burst`` frames on their way when the first refusal reaches it (the
    widget sends a burst at once after a welcome), so those are not held against it: refused frames
    beyond ``burst``, counted since the client last waited until ``retry_after``, are strikes, and
    more than ``warnings`` strikes close. A widget that waits as told is never closed, even when other
    tabs of its address spent the shared budget; a client that keeps sending without waiting is closed
    after ``burst + warnings + 1`` refusals in a row, however many of its frames get through between.
    """

    # One per open socket: no instance dict (about 240 bytes less per socket, docs/performance.md).
    __slots__ = ("rate", "per", "burst", "warnings", "bucket", "refused", "retry_at")

    def __init__(self, rate=ratelimit.MESSAGES, per=ratelimit.PER, burst=ratelimit.BURST, warnings=WARNINGS):
        if rate <= 0 or per <= 0 or burst < 1 or warnings < 0:
            raise ValueError("rate and per must be positive, burst at least 1, warnings not negative")
        self.rate = rate
        self.per = per
        self.burst = burst
        self.warnings = warnings
        self.bucket = ratelimit.TokenBucket(rate, per, burst)  # the widget paces its outbox with the same bucket
        self.refused = 0      # frames refused since the client last waited as told
        self.retry_at = None  # when the last refusal said the client may send again

    @property
    def tokens(self):
        return self.bucket.tokens

    @property
    def strikes(self):
        return max(0, self.refused - self.burst)

    def allow(self, now):
        """Take a token if there is one; True when the frame may pass (no strikes involved)."""
        return self.bucket.take(now)

    def check(self, now, shared_wait=0.0):
        """``"ok"``, ``"warn"`` or ``"close"`` for one frame arriving at ``now``; on ``"ok"`` the token is taken."""
        if self.retry_at is not None and now >= self.retry_at:
            self.refused = 0  # it waited as told: a clean slate
            self.retry_at = None
        wait = max(self.bucket.wait(now), shared_wait)
        if wait <= 0 and self.bucket.take(now):
            return OK
        return self._refuse(now, wait)

    def refuse(self, now, wait):
        """A frame that ``check`` let through was refused by a budget asked afterwards (the session's,
        kept in the store): its token comes back, and the refusal counts as any other."""
        self.bucket.tokens = min(self.bucket.burst, self.bucket.tokens + 1)
        return self._refuse(now, wait)

    def _refuse(self, now, wait):
        self.refused += 1
        self.retry_at = max(self.retry_at or now, now + wait)
        return WARN if self.strikes <= self.warnings else CLOSE

    def retry_after(self, now):
        """Seconds until the client may send again (0 when it may now): for the error frame."""
        if self.retry_at is not None and self.retry_at > now:
            return self.retry_at - now
        return self.bucket.wait(now)


class AddressCounter:
    """Open connections per client address; ``acquire`` refuses beyond ``max_per_address``.

    Pass addresses through ``address_key`` so one IPv6 host cannot take a fresh address per socket.
    Behind a reverse proxy the peer address is the proxy's unless the proxy is in the setting
    ``trusted_proxies`` (then the client's address is read from ``X-Forwarded-For``).
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
