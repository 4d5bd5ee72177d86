"""The Realtime responder: the Realtime model answers; the local Piper voice answers when it cannot.

Why one place: every way the cloud can fail (no key, refused, 401, dropped, stalled, over budget, breaker
open) ends the same way for the user — a short spoken sentence instead of silence — and every one is a
`fallback {reason}` trace event. The session is opened at the wake word, in parallel with listening, so
connection time is never added after the user stops speaking.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator

from daemon.answer.budget import DailyCost
from daemon.answer.fallback import NOT_OUTAGES, CircuitBreaker, FallbackGuard
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
from daemon.answer.voice import LocalVoice
from daemon.audio.frames import AudioChunk
from daemon.config.settings import Secrets, Settings
from daemon.observe import events as ev
from daemon.observe.bus import EventBus

log = logging.getLogger(__name__)

__all__ = ["NOT_OUTAGES", "RealtimeResponder"]


class RealtimeResponder:
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
        probe_s = settings.realtime.connect_timeout + settings.realtime.response_timeout
        self.guard = FallbackGuard(
            settings.fallback, bus, voice, lambda: self.client.probe(probe_s), probe_timeout_s=probe_s + 1.0
        )
        self._opening: asyncio.Task[FallbackReason | None] | None = None

    @property
    def breaker(self) -> CircuitBreaker:
        return self.guard.breaker

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
            self.guard.succeeded()
        elif isinstance(event, Failure):
            self._record(event.reason)
            failure.append(event.reason)
            return False
        return True

    def _record(self, reason: FallbackReason) -> None:
        self.guard.failed(reason)

    def _fallback(self, reason: FallbackReason) -> AsyncGenerator[AudioChunk, None]:
        return self.guard.speak(reason)

    async def interrupt(self, played_ms: int) -> None:
        await self.client.cancel(played_ms)

    async def aclose(self) -> None:
        await self.guard.aclose()
        if self._opening is not None:
            self._opening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._opening
        await self.client.close()
