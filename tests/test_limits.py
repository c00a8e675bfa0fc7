"""The pure abuse limits of server/transport/limits.py, driven by a fake clock."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import ratelimit
from server.config import DEFAULTS
from server.transport.limits import CLOSE, OK, WARN, WARNINGS, AddressCounter, RateLimiter, address_key


class FakeClock:
    def __init__(self, now=1000.0):
        self.now = now

    def advance(self, seconds):
        self.now += seconds
        return self.now


def test_defaults_are_the_proposed_ones():
    """20 messages per 10 s, burst 10, 3 warnings, 20 connections per address (docs/security.md);
    the server's settings take the rate from the one place the widget's pacing reads it too."""
    limiter = RateLimiter()
    assert (limiter.rate, limiter.per, limiter.burst, limiter.warnings) == (20, 10.0, 10, 3)
    assert (ratelimit.MESSAGES, ratelimit.PER, ratelimit.BURST, WARNINGS) == (20, 10, 10, 3)
    assert (DEFAULTS["message_rate"], DEFAULTS["message_period"], DEFAULTS["message_burst"]) == (20, 10, 10)
    assert DEFAULTS["max_connections_per_address"] == 20


def test_burst_passes_then_the_next_frame_is_refused():
    """A fresh bucket lets exactly `burst` frames through at one instant, then refuses."""
    clock = FakeClock()
    limiter = RateLimiter(rate=20, per=10, burst=10)
    assert [limiter.allow(clock.now) for _ in range(11)] == [True] * 10 + [False]


def test_tokens_come_back_at_the_sustained_rate():
    """After the burst, one token returns every per/rate seconds (0.5 s at 20 per 10 s)."""
    clock = FakeClock()
    limiter = RateLimiter(rate=20, per=10, burst=10)
    for _ in range(10):
        limiter.allow(clock.now)
    assert not limiter.allow(clock.advance(0.49))
    assert limiter.allow(clock.advance(0.01))
    assert not limiter.allow(clock.now)
    assert limiter.retry_after(clock.now) == pytest.approx(0.5)


def test_refill_is_capped_at_burst():
    """A long quiet spell earns at most `burst` tokens, not an unbounded credit."""
    clock = FakeClock()
    limiter = RateLimiter(rate=20, per=10, burst=10)
    clock.advance(3600)
    assert sum(limiter.allow(clock.now) for _ in range(50)) == 10


def test_sustained_rate_is_never_refused():
    """A client sending exactly at the sustained rate (one every 0.5 s) is never refused, for minutes."""
    clock = FakeClock()
    limiter = RateLimiter(rate=20, per=10, burst=10)
    assert all(limiter.check(clock.advance(0.5)) == OK for _ in range(600))


def test_past_the_burst_and_the_frames_in_flight_three_warnings_then_close():
    """Past the burst: the next 10 refused frames may have been on their way (not strikes), then 3
    warnings, then 'close'."""
    clock = FakeClock()
    limiter = RateLimiter(rate=20, per=10, burst=10, warnings=3)
    verdicts = [limiter.check(clock.now) for _ in range(24)]
    assert verdicts == [OK] * 10 + [WARN] * 13 + [CLOSE]


def test_waiting_as_told_gives_a_clean_slate():
    """A client that was warned, then waited until retry_after, starts again with no strikes."""
    clock = FakeClock()
    limiter = RateLimiter(rate=20, per=10, burst=10, warnings=3)
    for _ in range(23):
        limiter.check(clock.now)  # 10 ok, 13 warnings: the next would close
    assert limiter.strikes == 3
    assert limiter.check(clock.advance(limiter.retry_after(clock.now))) == OK
    assert limiter.strikes == 0
    assert [limiter.check(clock.now) for _ in range(14)] == [WARN] * 13 + [CLOSE]


def test_a_client_sending_five_times_too_fast_gets_the_rate_through_and_no_more():
    """Every 0.1 s against 2 a second: each frame that arrives after the token it was told to wait for
    passes (it did wait, in effect); the others are refused. Closing is for clients that keep sending
    through a longer wait (the next test)."""
    clock = FakeClock()
    limiter = RateLimiter(rate=20, per=10, burst=10, warnings=3)
    verdicts = [limiter.check(clock.advance(0.1)) for _ in range(600)]
    assert verdicts.count(OK) <= 10 + 2 * 60 + 1 and CLOSE not in verdicts


def test_a_client_that_waits_as_told_is_never_closed():
    """However often it is refused (here by a budget shared with other connections), a client that sends
    again only after the retry_after it was given collects no strikes."""
    clock = FakeClock()
    limiter = RateLimiter(rate=20, per=10, burst=10, warnings=3)
    verdicts = []
    for _ in range(50):
        verdicts.append(limiter.check(clock.now, shared_wait=4.0))
        clock.advance(limiter.retry_after(clock.now) + 0.01)
    assert set(verdicts) == {WARN} and limiter.strikes == 0


def test_tabs_flushing_bursts_into_a_spent_shared_budget_are_not_closed():
    """Three tabs of one address each send their burst of 10 at once when the address's budget is spent
    (as the widget does after a welcome), then wait as told and send the next burst: none is closed."""
    clock = FakeClock()
    tabs = [RateLimiter(rate=20, per=10, burst=10, warnings=3) for _ in range(3)]
    for _ in range(5):
        for tab in tabs:
            assert {tab.check(clock.advance(0.001), shared_wait=6.0) for _ in range(10)} == {WARN}
        clock.advance(max(tab.retry_after(clock.now) for tab in tabs))


def test_a_client_that_ignores_retry_after_is_closed():
    """Refused by the shared budget and sending again every half second: closed once the frames that
    could have been in flight and three warnings are used up."""
    clock = FakeClock()
    limiter = RateLimiter(rate=20, per=10, burst=10, warnings=3)
    verdicts = [limiter.check(clock.advance(0.5), shared_wait=15.0) for _ in range(14)]
    assert verdicts == [WARN] * 13 + [CLOSE]
    assert limiter.retry_after(clock.now) == pytest.approx(15.0)


def test_clock_going_backwards_grants_nothing():
    """A clock that steps back (it should not, with monotonic time) neither refills nor breaks the bucket."""
    clock = FakeClock()
    limiter = RateLimiter(rate=20, per=10, burst=1)
    assert limiter.allow(clock.now)
    assert not limiter.allow(clock.advance(-100))
    assert limiter.allow(clock.advance(100.5))


def test_retry_after_is_zero_when_a_token_is_available():
    """retry_after tells the client how long to wait, and 0 when it may send now."""
    clock = FakeClock()
    limiter = RateLimiter(rate=1, per=2, burst=1)
    assert limiter.retry_after(clock.now) == 0
    limiter.allow(clock.now)
    assert limiter.retry_after(clock.advance(0.5)) == pytest.approx(1.5)


@pytest.mark.parametrize("arguments", [dict(rate=0), dict(per=0), dict(burst=0), dict(warnings=-1)])
def test_bad_settings_are_refused(arguments):
    """Nonsensical limits raise at construction instead of silently blocking or allowing everything."""
    with pytest.raises(ValueError):
        RateLimiter(**arguments)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=200))
def test_never_more_than_burst_plus_rate_times_elapsed(gaps):
    """Whatever the timing, accepted frames never exceed burst + rate * elapsed / per."""
    clock = FakeClock(0.0)
    limiter = RateLimiter(rate=20, per=10, burst=10)
    accepted = 0
    for gap in gaps:
        accepted += limiter.allow(clock.advance(gap))
    assert accepted <= 10 + 20 * clock.now / 10 + 1e-9


def test_address_counter_refuses_beyond_the_limit_and_frees_on_release():
    """The 3rd connection from one address is refused at limit 2; a release makes room again."""
    counter = AddressCounter(2)
    assert counter.acquire("192.0.2.1") and counter.acquire("192.0.2.1")
    assert not counter.acquire("192.0.2.1")
    assert counter.acquire("192.0.2.2")
    counter.release("192.0.2.1")
    assert counter.acquire("192.0.2.1")


def test_address_counter_forgets_idle_addresses():
    """Released addresses leave no entry behind (no slow leak over millions of visitors)."""
    counter = AddressCounter(5)
    for n in range(100):
        address = f"198.51.100.{n}"
        counter.acquire(address)
        counter.release(address)
    assert len(counter) == 0


def test_address_counter_release_of_unknown_address_is_harmless():
    """A release without acquire (a refused handshake's cleanup) never goes negative or raises."""
    counter = AddressCounter(1)
    counter.release("203.0.113.9")
    assert counter.acquire("203.0.113.9")
    assert not counter.acquire("203.0.113.9")


def test_address_counter_rejects_a_zero_limit():
    """A limit below 1 would refuse everyone: refused at construction."""
    with pytest.raises(ValueError):
        AddressCounter(0)


@pytest.mark.parametrize("address, key", [
    ("192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("fe80::1%eth0", "fe80::/64"),
    ("/run/chat.sock", "/run/chat.sock"),
    (None, "None"),
])
def test_address_key_groups_ipv6_by_64(address, key):
    """One IPv6 host (a /64) counts once; mapped IPv4 counts as IPv4; non-IP peers pass through."""
    assert address_key(address) == key
