"""Unit tests for widget/core/backoff.py (reconnect delay policy)."""

import random as stdlib_random

from hypothesis import given, strategies as st

from widget.core.backoff import FLOOR, ceiling, next_delay, paced_delay

BASE = 0.75
CAP = 30.0

attempts = st.integers(min_value=0, max_value=10 ** 6)
units = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


def const(r):
    return lambda: r


def test_ceiling_doubles_from_base_up_to_cap():
    """The ceiling is base * 2**(n-1) for the n-th failure, clamped at the cap."""
    got = [ceiling(n, BASE, CAP) for n in range(1, 9)]
    assert got == [0.75, 1.5, 3.0, 6.0, 12.0, 24.0, 30.0, 30.0]


def test_attempt_zero_is_treated_as_first_attempt():
    """attempt 0 gives the same window as attempt 1 (the smallest)."""
    assert ceiling(0, BASE, CAP) == ceiling(1, BASE, CAP) == BASE


def test_huge_attempt_does_not_overflow():
    """A very large attempt number stays at the cap instead of overflowing a float."""
    assert ceiling(10 ** 9, BASE, CAP) == CAP
    assert FLOOR <= next_delay(10 ** 9, BASE, CAP, const(0.999)) < CAP


def test_zero_random_still_waits_the_floor():
    """random() == 0 never yields a zero delay (no tight reconnect loop)."""
    for n in (1, 5, 50):
        assert next_delay(n, BASE, CAP, const(0.0)) == FLOOR
    assert FLOOR > 0


def test_out_of_range_random_is_clamped():
    """A sloppy random source (negative or > 1) cannot escape the bounds."""
    assert next_delay(3, BASE, CAP, const(-5.0)) == FLOOR
    assert next_delay(50, BASE, CAP, const(7.0)) == CAP


@given(attempts, units)
def test_normal_delay_bounds(n, r):
    """For any attempt and random, floor <= delay <= the attempt's ceiling <= cap."""
    d = next_delay(n, BASE, CAP, const(r))
    assert FLOOR <= d <= ceiling(n, BASE, CAP) <= CAP


@given(attempts, units)
def test_slow_delay_bounds(n, r):
    """A 1013 delay lies in [ceiling(n), min(2*cap, 4*ceiling(n))], never above 2*cap."""
    c = ceiling(n, BASE, CAP)
    d = next_delay(n, BASE, CAP, const(r), slow=True)
    assert c <= d <= min(2 * CAP, 4 * c)
    assert d <= 2 * CAP


@given(attempts, units, units)
def test_slow_never_shorter_than_any_normal_delay(n, r1, r2):
    """For the same attempt, a slow (1013) delay is at least every normal delay."""
    assert next_delay(n, BASE, CAP, const(r1), slow=True) >= next_delay(n, BASE, CAP, const(r2))


@given(st.integers(min_value=1, max_value=60), units, units)
def test_delay_monotone_in_random(n, r1, r2):
    """A larger random draw never gives a shorter delay (the jitter is a plain scaling)."""
    lo, hi = sorted((r1, r2))
    assert next_delay(n, BASE, CAP, const(lo)) <= next_delay(n, BASE, CAP, const(hi))


@given(st.integers(min_value=1, max_value=30))
def test_ceiling_never_decreases_with_attempts(n):
    """More failures never shrink the backoff window."""
    assert ceiling(n + 1, BASE, CAP) >= ceiling(n, BASE, CAP)


def test_delays_at_cap_are_spread_not_clamped():
    """At the cap, a crowd of clients gets delays spread over the whole window, not one value."""
    rng = stdlib_random.Random(1234)
    delays = [next_delay(40, BASE, CAP, rng.random) for _ in range(2000)]
    assert len(set(delays)) > 1900
    assert min(delays) < 0.05 * CAP
    assert max(delays) > 0.95 * CAP
    # roughly uniform: each tenth of the window holds a fair share
    buckets = [0] * 10
    for d in delays:
        buckets[min(9, int(d / CAP * 10))] += 1
    assert min(buckets) > 120


def test_slow_delays_at_cap_are_spread():
    """1013 delays at the cap are spread over [cap, 2*cap) as well."""
    rng = stdlib_random.Random(99)
    delays = [next_delay(40, BASE, CAP, rng.random, slow=True) for _ in range(500)]
    assert len(set(delays)) > 450
    assert min(delays) < 1.1 * CAP and max(delays) > 1.9 * CAP


def test_tiny_base_still_respects_floor():
    """With a base below the floor, the delay is the floor and never zero."""
    for r in (0.0, 0.5, 0.99):
        assert next_delay(1, 0.01, CAP, const(r)) == FLOOR


@given(units)
def test_paced_delay_bounds(r):
    """Hidden-tab pacing stays in [period/2, period] and is jittered by random."""
    d = paced_delay(30.0, const(r))
    assert 15.0 <= d <= 30.0


def test_paced_delay_spread():
    """Hidden-tab pacing differs between clients (jittered)."""
    rng = stdlib_random.Random(7)
    assert len({paced_delay(30.0, rng.random) for _ in range(100)}) > 90
