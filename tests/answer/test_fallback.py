"""Fallback messages, the circuit breaker (pure logic, fake clock), the cloud prober and the daily spend."""

from __future__ import annotations

import asyncio
import logging

import pytest

from daemon.answer.fallback import CircuitBreaker, CloudProber, message_for
from daemon.answer.reasons import FallbackReason
from daemon.config.settings import FallbackMessages


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- messages ---------------------------------------------------------------------------------------------


def test_every_reason_has_a_message() -> None:
    messages = FallbackMessages(unreachable="No internet, sorry.")
    assert message_for(FallbackReason.UNREACHABLE, messages) == "No internet, sorry."
    assert message_for("cost_limit", messages) == messages.cost_limit
    assert message_for(FallbackReason.EXPIRED, messages) == messages.dropped
    for reason in FallbackReason:
        assert message_for(reason, messages).strip()
    assert {r.value for r in FallbackReason} == {
        "no_api_key",
        "unreachable",
        "auth",
        "dropped",
        "timeout",
        "expired",
        "error",
        "cost_limit",
        "breaker_open",
    }


def test_unknown_reason_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown fallback reason 'offline': expected one of no_api_key, "):
        message_for("offline", FallbackMessages())


# --- circuit breaker --------------------------------------------------------------------------------------


def test_breaker_opens_after_n_consecutive_failures() -> None:
    clock = FakeClock()
    changes: list[str] = []
    b = CircuitBreaker(failures=3, probe_min_s=5, probe_max_s=60, clock=clock)
    b.add_listener(changes.append)
    b.record_failure()
    b.record_failure()
    assert b.state == "closed" and b.allow()
    b.record_success()  # a success in between resets the count
    b.record_failure()
    b.record_failure()
    assert b.state == "closed"
    b.record_failure()
    assert b.state == "open" and changes == ["open"]
    assert not b.allow()  # answer locally at once
    assert b.next_probe_at == 1005.0


def test_breaker_probes_with_exponential_backoff_and_closes_on_success() -> None:
    clock = FakeClock()
    changes: list[str] = []
    b = CircuitBreaker(failures=1, probe_min_s=5, probe_max_s=30, clock=clock)
    b.add_listener(changes.append)
    b.record_failure()
    delays = []
    for _ in range(5):
        assert not b.allow()
        wait = b.seconds_until_probe()
        delays.append(wait)
        clock.now += wait
        assert b.allow()  # the probe is due: exactly one caller gets it
        assert not b.allow()
        b.record_failure()  # the probe failed
    assert delays == [5, 10, 20, 30, 30]
    clock.now += b.seconds_until_probe()
    assert b.allow()
    b.record_success()
    assert b.state == "closed" and b.allow() and b.seconds_until_probe() == 0
    assert changes == ["open", "closed"]
    b.record_failure()  # the backoff starts over after closing
    assert b.seconds_until_probe() == 5


def test_an_abandoned_probe_does_not_block_the_next_one() -> None:
    clock = FakeClock()
    b = CircuitBreaker(failures=1, probe_min_s=5, probe_max_s=30, clock=clock)
    b.record_failure()
    clock.now += 5
    assert b.allow()  # taken, but neither success nor failure is reported
    clock.now += 5
    assert b.allow()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failures": 0, "probe_min_s": 1, "probe_max_s": 2}, "failures=0: expected at least 1"),
        ({"failures": 1, "probe_min_s": 0, "probe_max_s": 2}, "expected 0 < probe_min_s <= probe_max_s"),
        ({"failures": 1, "probe_min_s": 9, "probe_max_s": 2}, "probe_min_s=9, probe_max_s=2"),
    ],
)
def test_bad_breaker_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


# --- prober -----------------------------------------------------------------------------------------------


async def test_prober_closes_the_breaker_once_the_cloud_answers() -> None:
    breaker = CircuitBreaker(failures=2, probe_min_s=0.01, probe_max_s=0.05)
    attempts = 0
    closed = asyncio.Event()
    breaker.add_listener(lambda state: closed.set() if state == "closed" else None)

    async def probe() -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionRefusedError("connection refused")

    prober = CloudProber(breaker, probe)
    prober.start()
    try:
        await asyncio.sleep(0)
        assert attempts == 0  # closed breaker: no probing
        breaker.record_failure()
        breaker.record_failure()
        await asyncio.wait_for(closed.wait(), 10)
    finally:
        await prober.stop()
    assert attempts == 3 and breaker.state == "closed"


async def test_a_hanging_probe_counts_as_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    breaker = CircuitBreaker(failures=1, probe_min_s=0.01, probe_max_s=0.02)
    failed = asyncio.Event()
    calls = 0

    async def probe() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(3600)
        failed.set()
        raise OSError("still down")

    prober = CloudProber(breaker, probe, probe_timeout_s=0.05)
    prober.start()
    try:
        with caplog.at_level(logging.INFO, logger="daemon.answer.fallback"):
            breaker.record_failure()
            await asyncio.wait_for(failed.wait(), 10)
    finally:
        await prober.stop()
    assert breaker.state == "open"
    assert "cloud probe timed out" in caplog.text


def test_bad_probe_timeout() -> None:
    async def probe() -> None:
        return None

    with pytest.raises(ValueError, match="probe_timeout_s=0: expected a positive"):
        CloudProber(CircuitBreaker(1, 1, 2), probe, probe_timeout_s=0)
