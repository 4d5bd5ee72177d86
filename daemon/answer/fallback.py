"""When the cloud fails: what to say, and when to stop trying at once.

Why a circuit breaker: after a few failures in a row, waiting out another connect timeout only makes the user
wait in silence; answering locally at once and probing the cloud in the background is the better trade.
All of this is plain logic (clocks are injected) so it is tested without sleeping; only `CloudProber` runs
on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Literal

from daemon.answer.reasons import FallbackReason
from daemon.answer.voice import LocalVoice, say_or_log
from daemon.audio.frames import AudioChunk
from daemon.config.settings import FallbackMessages, FallbackSettings
from daemon.observe import events as ev
from daemon.observe.bus import EventBus
from daemon.system import tasks
from daemon.system.backoff import delays

log = logging.getLogger(__name__)

BreakerState = Literal["closed", "open"]


def message_for(reason: FallbackReason | str, messages: FallbackMessages) -> str:
    """The configured sentence for a reason (a FallbackReason or its value).

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
        self._schedule = delays(probe_min_s, probe_max_s)
        self._delay_s = next(self._schedule)
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
        self._schedule = delays(self.probe_min_s, self.probe_max_s)
        self._delay_s = next(self._schedule)
        self._next_probe_at = None
        if was_open:
            log.info("cloud reachable again: circuit breaker closed")
            self._notify("closed")

    def record_failure(self) -> None:
        self._consecutive += 1
        now = self._clock()
        if self._next_probe_at is not None:  # a probe failed: back off further
            self._delay_s = next(self._schedule)
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
            self._task = tasks.spawn(self._run(), "hark-cloud-prober")

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


NOT_OUTAGES = frozenset({FallbackReason.NO_API_KEY, FallbackReason.COST_LIMIT, FallbackReason.EXPIRED})
"""Failures that say nothing about the cloud's health (the user's budget, a missing key, a 60-min expiry)."""


InsteadOfApology = Callable[[FallbackReason], Awaitable[AsyncIterator[AudioChunk] | None]]
"""Given why the cloud can't answer: an answer made on the device instead, or None (then the apology)."""


class FallbackGuard:
    """What every cloud backend shares: the breaker that counts its failures, the prober that closes it
    again (only with a real answer: `probe` must get one), and the spoken sentence for each failure."""

    def __init__(
        self,
        settings: FallbackSettings,
        bus: EventBus,
        voice: LocalVoice | None,
        probe: ProbeFn,
        probe_timeout_s: float,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.voice = voice
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.probe_min_s, settings.probe_max_s)
        self.prober = CloudProber(self.breaker, probe, probe_timeout_s=probe_timeout_s)
        self.breaker.add_listener(lambda state: bus.publish(ev.BreakerChanged(state)))
        self.instead_of_apology: InsteadOfApology | None = None
        """Set by a wrapper that can still answer without the cloud (daemon.intents: a declared command)."""

    @property
    def open(self) -> bool:
        """True while only the prober may try the cloud."""
        return self.breaker.state == "open"

    def succeeded(self) -> None:
        """A real answer arrived: the one thing that closes the breaker."""
        self.breaker.record_success()

    def failed(self, reason: FallbackReason) -> None:
        if reason in NOT_OUTAGES:
            return
        was = self.breaker.state
        self.breaker.record_failure()
        if was == "closed" and self.breaker.state == "open":
            log.warning(
                "the cloud failed %d times in a row: answering locally at once and probing in the background",
                self.settings.breaker_failures,
            )
            self.prober.start()

    async def speak(self, reason: FallbackReason) -> AsyncGenerator[AudioChunk, None]:
        """Say the configured sentence for `reason` with the local voice (a `fallback` event either way) —
        unless `instead_of_apology` has a better answer (a command understood on the device)."""
        if self.instead_of_apology is not None:
            instead = await self.instead_of_apology(reason)
            if instead is not None:
                async for chunk in instead:
                    yield chunk
                return
        text = message_for(reason, self.settings.messages)
        self.bus.publish(ev.Fallback(reason.value, text))
        async for chunk in say_or_log(self.voice, text):
            yield chunk

    async def aclose(self) -> None:
        await self.prober.stop()
