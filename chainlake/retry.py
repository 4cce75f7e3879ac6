"""How long to wait before trying a server again: its `Retry-After` header, read once for every
client, and the exponential backoff between attempts.

The JSON-RPC client (`chainlake.rpc`) and action delivery (`chainlake.actions`) both wait with
these, so a date in the past, an unreadable header or a huge attempt number is handled the same
way everywhere. What is retried, and how a server's wish weighs against the backoff, stays with
each caller.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import re
import time
from collections.abc import Callable

# RFC 9110 allows whole seconds only; fractions are accepted because some servers send them.
# Signs, exponents, "inf" and "nan" are not seconds anyone meant.
_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def parse_retry_after(value: str | None, *, clock: Callable[[], float] = time.time) -> float | None:
    """Read a `Retry-After` header value as seconds to wait.

    Args:
        value: The header value, either delay-seconds (``"120"``, ``"1.5"``) or an HTTP-date
            (``"Wed, 21 Oct 2015 07:28:00 GMT"``); ``None`` when the header is absent.
        clock: The current time in Unix seconds, against which an HTTP-date is measured. It
            must be wall-clock time: a monotonic clock has no relation to dates.

    Returns:
        The seconds to wait, never negative (a date already past gives 0.0), or ``None`` when
        the value is absent or unreadable, so that the caller uses its own backoff.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _DELAY_SECONDS.fullmatch(value):
        seconds = float(value)
        # Hundreds of digits overflow to inf, which no sleep can take.
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # what parsedate_to_datetime returned for garbage before Python 3.10
        return None
    if when.tzinfo is None:
        # "-0000" parses to a naive datetime, which .timestamp() would read as local time;
        # HTTP-dates are always GMT.
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - clock())


def backoff_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    multiplier: float = 2.0,
    jitter: Callable[[], float] | None = None,
) -> float:
    """Seconds to wait after failed attempt number `attempt`: exponential, capped, optionally
    jittered.

    The delay is ``base * multiplier ** (attempt - 1)``, at most ``cap``. With ``jitter`` it is
    then scaled by a factor drawn from [0.5, 1), so that clients failing together do not all
    come back at the same moment, while still waiting at least half the backoff.

    Args:
        attempt: The number of the attempt that failed, from 1; 0 or less counts as 1.
        base: The delay after the first failure, in seconds.
        cap: The longest delay, in seconds.
        multiplier: The growth factor from one attempt to the next.
        jitter: A source of uniform random numbers in [0, 1), such as ``random.random`` (or a
            seeded ``random.Random().random`` in tests); ``None`` for no jitter.

    Returns:
        The delay in seconds, between 0 and ``cap``.
    """
    if base <= 0 or cap <= 0:
        return 0.0
    try:
        delay = min(cap, base * multiplier ** max(0, attempt - 1))
    except OverflowError:  # an attempt number in the thousands: far past the cap anyway
        delay = cap
    if jitter is not None:
        delay *= 0.5 + jitter() / 2
    return delay
