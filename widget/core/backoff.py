"""Reconnect delay policy: exponential backoff with full jitter.

Pure functions, no clock and no global randomness: the caller passes
``random``, a zero-argument callable returning a float in [0, 1).
Runs unchanged under CPython, Pyodide and MicroPython.

Normal delay for the n-th consecutive failure (n >= 1)::

    ceiling(n) = min(cap, base * 2 ** (n - 1))
    delay      = floor + random() * (ceiling(n) - floor)       # in [floor, ceiling)

Full jitter on every attempt, including at the cap: a crowd of clients
dropped at the same moment (server restart) spreads uniformly over the
whole window instead of returning in lock-step, and a client never waits
a fixed clamped value (the Socket.IO anti-pattern). The floor (0.1 s)
means there is never a zero-delay tight loop, even if random() returns 0.

Slow delay (close code 1013 "try again later")::

    delay in [ceiling(n), min(2 * cap, 4 * ceiling(n)))

so a slow delay is never shorter than any normal delay for the same
attempt, and never longer than twice the cap (60 s with defaults).

Hidden-tab pacing (see ``paced_delay``): period * (0.5 + 0.5 * random()),
i.e. in [period / 2, period), still jittered.
"""

FLOOR = 0.1          # seconds; smallest delay ever returned by next_delay
SLOW_FACTOR = 4      # 1013: ceiling multiplied by this ...
SLOW_CAP_FACTOR = 2  # ... but never above cap * this


def _unit(random):
    # Clamp the injected random into [0, 1] so a sloppy source cannot
    # produce negative or oversized delays.
    r = random()
    if r < 0.0:
        return 0.0
    if r > 1.0:
        return 1.0
    return r


def ceiling(attempt, base, cap):
    """Upper bound of the normal delay for the attempt-th failure (1-based)."""
    c = base
    n = 1
    # Doubling loop instead of base * 2 ** n: no float overflow for huge
    # attempt numbers, and it stops as soon as the cap is reached.
    while n < attempt and c < cap:
        c = c * 2
        n += 1
    if c > cap:
        c = cap
    return c


def next_delay(attempt, base, cap, random, slow=False, floor=FLOOR):
    """Seconds to wait before the next connection attempt.

    attempt: consecutive failures so far (1 = first retry; 0 is treated as 1).
    base, cap: backoff base and cap in seconds.
    random: zero-arg callable returning a float in [0, 1).
    slow: True for "try again later" (1013): a longer, still jittered delay.
    """
    c = ceiling(attempt, base, cap)
    if c < floor:
        c = floor
    r = _unit(random)
    if slow:
        hi = c * SLOW_FACTOR
        limit = cap * SLOW_CAP_FACTOR
        if hi > limit:
            hi = limit
        if hi < c:
            hi = c
        return c + r * (hi - c)
    return floor + r * (c - floor)


def paced_delay(period, random, floor=FLOOR):
    """A jittered delay in [period / 2, period): slow pacing for hidden tabs."""
    d = period * (0.5 + 0.5 * _unit(random))
    if d < floor:
        d = floor
    return d
