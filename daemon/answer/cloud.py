"""The cloud responder: the Realtime model answers; the local Piper voice answers when it cannot.

Why one place: every way the cloud can fail (no key, refused, 401, dropped, stalled, over budget, breaker
open) ends the same way for the user — a short spoken sentence instead of silence — and every one is a
`fallback {reason}` trace event. The session is opened at the wake word, in parallel with listening, so
connection time is never added after the user stops speaking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

from daemon.answer.budget import DailyCost
from daemon.answer.fallback import CircuitBreaker, CloudProber, message_for
from daemon.answer.realtime.client import RealtimeClient
from daemon.answer.realtime.protocol import (
    RATE_HZ,
    AudioDelta,
    Failure,
    RealtimeEvent,
    RealtimeFailure,
    ResponseDone,
    TextDelta,
    Transcript,
)
from daemon.answer.reasons import FallbackReason
from daemon.answer.tools import ToolRegistry
from daemon.answer.voice import LocalVoice, VoiceError
from daemon.audio.frames import AudioChunk
from daemon.config.settings import Secrets, Settings
from daemon.observe import events as ev
from daemon.observe.bus import EventBus

log = logging.getLogger(__name__)

# Failures that say nothing about the cloud's health (the user's budget, a missing key, a 60-min expiry).
NOT_OUTAGES = {FallbackReason.NO_API_KEY, FallbackReason.COST_LIMIT, FallbackReason.EXPIRED}


class CloudResponder:
    """Responder (see daemon.answer.responder) backed by the Realtime API, with the local voice as fallback."""

    def __init__(
        self,
        settings: Settings,
        secrets: Secrets,
        bus: EventBus,
        voice: LocalVoice | None,
        tools: ToolRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.voice = voice
        self.tools = tools or ToolRegistry(settings.tools)
        self.client = RealtimeClient(
            settings.realtime,
            settings.cost,
            secrets.openai_api_key,
            self.tools,
            bus,
            spend=DailyCost(settings.state_dir),
        )
        fb = settings.fallback
        self.breaker = CircuitBreaker(fb.breaker_failures, fb.probe_min_s, fb.probe_max_s)
        probe_s = settings.realtime.connect_timeout + settings.realtime.response_timeout
        self.prober = CloudProber(self.breaker, lambda: self.client.probe(probe_s), probe_timeout_s=probe_s + 1.0)
        self.breaker.add_listener(lambda state: self.bus.publish(ev.BreakerChanged(state)))
        self._opening: asyncio.Task[FallbackReason | None] | None = None
        self.instead_of_apology: Callable[[FallbackReason], Awaitable[AsyncIterator[AudioChunk] | None]] | None = None
        """Asked before every apology (daemon.intents, commands.local = "offline"): an answer of its own for
        this turn (a declared command carried out on the device), or None to apologize as usual."""

    # --- capture side -------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Open (or reuse) the session now, while the user is still speaking."""
        if self._opening is None or self._opening.done():
            self._opening = asyncio.create_task(self._open(), name="hark-realtime-open")

    async def _open(self) -> FallbackReason | None:
        if self.breaker.state == "open":  # only the prober tries the cloud until it answers again
            return FallbackReason.BREAKER_OPEN
        try:
            await self.client.open()
        except RealtimeFailure as e:
            self._record(e.reason)
            return e.reason
        return None

    def append(self, pcm16k: bytes) -> None:
        self.client.append(pcm16k)

    def discard(self) -> None:
        self.client.discard()

    # --- answer side --------------------------------------------------------------------------------------

    async def answer(self) -> AsyncGenerator[AudioChunk, None]:
        failure = await self._ready()
        if failure is not None:
            async for chunk in self._fallback(failure):
                yield chunk
            return
        if self.settings.realtime.turn_detection == "local":
            await self.client.commit()
        # with server_vad / semantic_vad the server commits and answers on its own end-of-speech
        async for chunk in self._stream():
            yield chunk

    async def ask(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        self.prepare()
        failure = await self._ready()
        if failure is not None:
            async for chunk in self._fallback(failure):
                yield chunk
            return
        await self.client.ask(text)
        async for chunk in self._stream():
            yield chunk

    async def _ready(self) -> FallbackReason | None:
        if self._opening is None:
            self.prepare()
        assert self._opening is not None
        failure = await self._opening
        if failure is not None:
            self.client.discard()
        return failure

    async def _stream(self) -> AsyncGenerator[AudioChunk, None]:
        """Answer audio as it arrives; text-mode answers go through the local voice sentence by sentence."""
        failure: list[FallbackReason] = []
        heard = False
        if self.settings.realtime.output == "text" and self.voice is not None:
            async for chunk in self.voice.speak_stream(self._text(failure)):
                heard = True
                yield chunk
        else:
            async for event in self.client.events():
                if isinstance(event, AudioDelta):
                    heard = True
                    yield AudioChunk(event.pcm24k, RATE_HZ)
                elif not self._bookkeep(event, failure):
                    break
        if failure:
            log.warning(
                "the cloud answer failed (%s)%s",
                failure[0].value,
                " after part of it played" if heard else "",
            )
            async for chunk in self._fallback(failure[0]):
                yield chunk

    async def _text(self, failure: list[FallbackReason]) -> AsyncIterator[str]:
        async for event in self.client.events():
            if isinstance(event, TextDelta):
                yield event.text
            elif not self._bookkeep(event, failure):
                return

    def _bookkeep(self, event: RealtimeEvent, failure: list[FallbackReason]) -> bool:
        """Side events of a response; False when the response ended in a failure."""
        if isinstance(event, Transcript) and not event.final:
            self.bus.publish(ev.TranscriptDelta(event.role, event.text))
        elif isinstance(event, ResponseDone):
            self.breaker.record_success()
        elif isinstance(event, Failure):
            self._record(event.reason)
            failure.append(event.reason)
            return False
        return True

    def _record(self, reason: FallbackReason) -> None:
        if reason in NOT_OUTAGES:
            return
        was = self.breaker.state
        self.breaker.record_failure()
        if was == "closed" and self.breaker.state == "open":
            log.warning(
                "the cloud failed %d times in a row: answering locally at once and probing in the background",
                self.settings.fallback.breaker_failures,
            )
            self.prober.start()

    async def _fallback(self, reason: FallbackReason) -> AsyncGenerator[AudioChunk, None]:
        if self.instead_of_apology is not None:
            instead = await self.instead_of_apology(reason)
            if instead is not None:
                async for chunk in instead:
                    yield chunk
                return
        text = message_for(reason, self.settings.fallback.messages)
        self.bus.publish(ev.Fallback(reason.value, text))
        if self.voice is None:
            log.error("cannot say %r: no local voice (run scripts/fetch-models)", text)
            return
        try:
            async for chunk in self.voice.speak(text):
                yield chunk
        except VoiceError as e:
            log.error("local voice failed: %s", e)

    async def interrupt(self, played_ms: int) -> None:
        await self.client.cancel(played_ms)

    async def aclose(self) -> None:
        await self.prober.stop()
        if self._opening is not None:
            self._opening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._opening
        await self.client.close()
