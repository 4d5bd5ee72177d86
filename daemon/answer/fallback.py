"""When the cloud fails: what to say, when to stop trying at once, and how much was spent today.

Why a circuit breaker: after a few failures in a row, waiting out another connect timeout only makes the user
wait in silence; answering locally at once and probing the cloud in the background is the better trade.
All of this is plain logic (clocks are injected) so it is tested without sleeping; only `CloudProber` runs
on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from pathlib import Path
from typing import Literal

from daemon.config.settings import FallbackMessages

log = logging.getLogger(__name__)

BreakerState = Literal["closed", "open"]


class FallbackReason(str, Enum):
    """Why the answer came from the local voice (the trace's `fallback.reason`).

    A superset of daemon.realtime_events.FailureReason (same values) plus `breaker_open`, which only this
    module decides (an Enum with members cannot be extended, hence a second one). `message_for` takes either.
    """

    NO_API_KEY = "no_api_key"
    UNREACHABLE = "unreachable"
    """Connection refused, DNS failure or connect timeout."""
    AUTH = "auth"
    """HTTP 401/403 at the handshake."""
    DROPPED = "dropped"
    """The websocket closed mid-answer."""
    TIMEOUT = "timeout"
    """No first answer audio within realtime.response_timeout."""
    EXPIRED = "expired"
    """The 60-minute session ended during a turn."""
    ERROR = "error"
    """A fatal error event from the server."""
    COST_LIMIT = "cost_limit"
    BREAKER_OPEN = "breaker_open"
    """Too many failures in a row: the cloud was not even tried."""


def message_for(reason: FallbackReason | str, messages: FallbackMessages) -> str:
    """The configured sentence for a reason: a FallbackReason, a realtime FailureReason or its value.

    An unknown reason is a bug: it raises, naming the valid ones."""
    try:
        reason = FallbackReason(reason)
    except ValueError:
        valid = ", ".join(r.value for r in FallbackReason)
        raise ValueError(f"unknown fallback reason {reason!r}: expected one of {valid}") from None
    by_reason = {
        FallbackReason.NO_API_KEY: messages.no_api_key,
        FallbackReason.UNREACHABLE: messages.unreachable,
        FallbackReason.AUTH: messages.auth,
        FallbackReason.DROPPED: messages.dropped,
        FallbackReason.TIMEOUT: messages.timeout,
        FallbackReason.EXPIRED: messages.dropped,  # no own message: to the user it is a lost connection
        FallbackReason.ERROR: messages.error,
        FallbackReason.COST_LIMIT: messages.cost_limit,
        FallbackReason.BREAKER_OPEN: messages.breaker_open,
    }
    return by_reason[reason]


class CircuitBreaker:
    """Closed: use the cloud. Open after `failures` consecutive failures: answer locally, except for one
    probe whenever the probe delay has passed (doubling from `probe_min_s` up to `probe_max_s`).
    One success closes it."""

    def __init__(
        self,
        failures: int,
        probe_min_s: float,
        probe_max_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1:
            raise ValueError(f"breaker failures={failures}: expected at least 1")
        if not 0 < probe_min_s <= probe_max_s:
            raise ValueError(
                f"probe_min_s={probe_min_s}, probe_max_s={probe_max_s}: expected 0 < probe_min_s <= probe_max_s"
            )
        self.failures = failures
        self.probe_min_s = probe_min_s
        self.probe_max_s = probe_max_s
        self._clock = clock
        self._consecutive = 0
        self._delay_s = probe_min_s
        self._next_probe_at: float | None = None
        self._listeners: list[Callable[[BreakerState], None]] = []

    @property
    def state(self) -> BreakerState:
        return "closed" if self._next_probe_at is None else "open"

    @property
    def next_probe_at(self) -> float | None:
        """Clock time of the next allowed probe; None while closed."""
        return self._next_probe_at

    def seconds_until_probe(self) -> float:
        if self._next_probe_at is None:
            return 0.0
        return max(0.0, self._next_probe_at - self._clock())

    def add_listener(self, listener: Callable[[BreakerState], None]) -> None:
        """Called with the new state on every open/close (trace, MQTT, the prober)."""
        self._listeners.append(listener)

    def allow(self) -> bool:
        """May the cloud be tried now? While open, True once per probe delay: that attempt is the probe."""
        if self._next_probe_at is None:
            return True
        now = self._clock()
        if now < self._next_probe_at:
            return False
        self._next_probe_at = now + self._delay_s  # one probe per delay, however many callers ask
        return True

    def record_success(self) -> None:
        was_open = self._next_probe_at is not None
        self._consecutive = 0
        self._delay_s = self.probe_min_s
        self._next_probe_at = None
        if was_open:
            log.info("cloud reachable again: circuit breaker closed")
            self._notify("closed")

    def record_failure(self) -> None:
        self._consecutive += 1
        now = self._clock()
        if self._next_probe_at is not None:  # a probe failed: back off further
            self._delay_s = min(self._delay_s * 2, self.probe_max_s)
            self._next_probe_at = now + self._delay_s
            log.info("cloud probe failed; next probe in %.0f s", self._delay_s)
        elif self._consecutive >= self.failures:
            self._next_probe_at = now + self._delay_s
            log.warning(
                "%d cloud failures in a row: answering locally; probing again in %.0f s",
                self._consecutive,
                self._delay_s,
            )
            self._notify("open")

    def _notify(self, state: BreakerState) -> None:
        for listener in self._listeners:
            listener(state)


ProbeFn = Callable[[], Awaitable[object]]


class CloudProber:
    """While the breaker is open, tries `probe()` (e.g. open a Realtime session) each time a probe is due."""

    def __init__(self, breaker: CircuitBreaker, probe: ProbeFn, probe_timeout_s: float = 10.0) -> None:
        if probe_timeout_s <= 0:
            raise ValueError(f"probe_timeout_s={probe_timeout_s}: expected a positive number of seconds")
        self.breaker = breaker
        self._probe = probe
        self._timeout_s = probe_timeout_s
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        breaker.add_listener(lambda _state: self._changed.set())

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="hark-cloud-prober")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            if self.breaker.state == "closed":
                self._changed.clear()
                await self._changed.wait()
                continue
            wait_s = self.breaker.seconds_until_probe()
            if wait_s > 0:
                self._changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait_s)
                continue
            if self.breaker.allow():
                await self._probe_once()

    async def _probe_once(self) -> None:
        try:
            await asyncio.wait_for(self._probe(), self._timeout_s)
        except asyncio.TimeoutError:
            log.info("cloud probe timed out after %.0f s", self._timeout_s)
            self.breaker.record_failure()
        except Exception as e:  # any failure of the probe means: still down
            log.info("cloud probe failed: %s", e)
            self.breaker.record_failure()
        else:
            self.breaker.record_success()


class DailyCost:
    """Today's cloud spend in USD; persisted so a restart keeps the daily cap; resets at local midnight."""

    FILE_NAME = "daily_cost.json"

    def __init__(self, state_dir: Path, today: Callable[[], dt.date] = dt.date.today) -> None:
        self.path = Path(state_dir) / self.FILE_NAME
        self._today = today
        self._date, self._usd = self._read()

    @property
    def spent_today(self) -> float:
        self._roll()
        return self._usd

    def add(self, usd: float) -> None:
        if isinstance(usd, bool) or not isinstance(usd, (int, float)) or not math.isfinite(usd) or usd < 0:
            raise ValueError(f"DailyCost.add({usd!r}): expected a finite amount in USD >= 0")
        self._roll()
        self._usd += float(usd)
        self._write()

    def over(self, limit: float) -> bool:
        """Has today's spend reached `limit` USD? A limit of 0 means no cap."""
        if not math.isfinite(limit) or limit < 0:
            raise ValueError(f"daily limit {limit!r}: expected USD >= 0 (0 = no cap)")
        return limit > 0 and self.spent_today >= limit

    def _roll(self) -> None:
        today = self._today()
        if today != self._date:
            if self._usd:
                log.info("new day: cloud spend of %s ($%.4f) reset", self._date.isoformat(), self._usd)
            self._date, self._usd = today, 0.0

    def _read(self) -> tuple[dt.date, float]:
        today = self._today()
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            day = dt.date.fromisoformat(raw["date"])
            usd = float(raw["usd"])
            if not math.isfinite(usd) or usd < 0:
                raise ValueError(f"usd={usd}")
        except FileNotFoundError:
            return today, 0.0
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("%s is unreadable (%s): counting today's cloud spend from $0", self.path, e)
            return today, 0.0
        return (day, usd) if day == today else (today, 0.0)

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"date": self._date.isoformat(), "usd": self._usd}), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("cannot save today's cloud spend to %s (%s): the daily cap resets on restart", self.path, e)
