"""The one retry schedule: every reconnect and probe in the daemon waits min, 2·min, 4·min … up to max.

The schedule is the `backoff` library's exponential generator; this only fixes its shape for our callers
(no jitter: one device per daemon, nothing to de-synchronise) and primes it.
"""

from __future__ import annotations

from collections.abc import Iterator

import backoff


def delays(min_s: float, max_s: float) -> Iterator[float]:
    """An endless schedule of waits in seconds; start a new one to begin again from `min_s`."""
    if not 0 < min_s <= max_s:
        raise ValueError(f"backoff from {min_s} s to {max_s} s: expected 0 < min <= max")
    schedule = backoff.expo(factor=min_s, max_value=max_s)
    next(schedule)  # the library's generators are primed with one send(None)
    return schedule
