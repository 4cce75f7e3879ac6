"""chainlake.retry: reading `Retry-After` and the backoff between attempts, as the RPC client and
action delivery both use them."""

from __future__ import annotations

import random

import pytest

from chainlake.retry import backoff_delay, parse_retry_after

# 1445412480 is Wed, 21 Oct 2015 07:28:00 GMT
DATE = "Wed, 21 Oct 2015 07:28:00 GMT"
AT = 1445412480.0


def test_delay_seconds() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("  7 ") == 7.0
    assert parse_retry_after("2.5") == 2.5
    assert parse_retry_after("0") == 0.0


def test_http_date_is_measured_against_the_given_clock() -> None:
    assert parse_retry_after(DATE, clock=lambda: AT - 10) == 10.0
    # the parsed date must not depend on the machine's time zone: "-0000" is naive, still UTC
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 -0000", clock=lambda: AT - 10) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 09:28:00 +0200", clock=lambda: AT - 10) == 10.0


def test_http_date_in_the_past_is_zero() -> None:
    assert parse_retry_after(DATE, clock=lambda: AT + 10) == 0.0
    assert parse_retry_after(DATE) == 0.0  # the real clock: 2015 is long past


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "soon",
        "-5",  # not delay-seconds: no sign allowed
        "+5",
        "1e3",
        "inf",
        "nan",
        "9" * 400,  # float() would make it inf
        "Wed, 21 Oct 99999 07:28:00 GMT",  # a year datetime cannot hold
        "Wed, 32 Oct 2015 07:28:00 GMT",
        "5 seconds",
    ],
)
def test_garbage_is_none_so_the_caller_backs_off_its_own_way(value: str | None) -> None:
    assert parse_retry_after(value, clock=lambda: AT) is None


def test_backoff_grows_to_the_cap_and_stays_there() -> None:
    got = [backoff_delay(a, base=1.0, cap=10.0) for a in range(1, 8)]
    assert got == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert [backoff_delay(a, base=0.5, cap=100.0, multiplier=3.0) for a in (1, 2, 3)] == [
        0.5,
        1.5,
        4.5,
    ]
    assert backoff_delay(0, base=1.0, cap=10.0) == 1.0  # attempt numbers start at 1


def test_backoff_cap_holds_for_attempt_numbers_that_overflow() -> None:
    # 2.0 ** 5000 raises OverflowError; the delay is the cap, not an exception
    assert backoff_delay(5000, base=0.2, cap=20.0) == 20.0
    assert backoff_delay(5000, base=0.2, cap=20.0, jitter=lambda: 0.999) <= 20.0


def test_no_delay_when_base_or_cap_is_zero() -> None:
    assert backoff_delay(50, base=0.0, cap=10.0) == 0.0
    assert backoff_delay(3, base=1.0, cap=0.0) == 0.0


def test_jitter_stays_between_half_the_backoff_and_the_backoff() -> None:
    assert backoff_delay(3, base=1.0, cap=10.0, jitter=lambda: 0.0) == 2.0
    assert backoff_delay(3, base=1.0, cap=10.0, jitter=lambda: 0.5) == 3.0
    rng = random.Random(7)
    delays = [backoff_delay(9, base=1.0, cap=10.0, jitter=rng.random) for _ in range(1000)]
    assert all(5.0 <= d < 10.0 for d in delays)
    assert len(set(delays)) > 900  # really spread, not one value
    # a seeded source gives the same delays again
    again = random.Random(7)
    assert delays[:5] == [
        backoff_delay(9, base=1.0, cap=10.0, jitter=again.random) for _ in range(5)
    ]
