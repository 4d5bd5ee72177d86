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
from collections.abc import AsyncGenerator, AsyncIterator

from daemon.answer.fallback import CircuitBreaker, CloudProber, DailyCost, FallbackReason, message_for
from daemon.answer.realtime.client import RealtimeClient
from daemon.answer.realtime.protocol import (
    RATE_HZ,
    AudioDelta,
    Failure,
    FailureReason,
    RealtimeFailure,
    ResponseDone,
    TextDelta,
    Transcript,
)
from daemon.answer.tools import ToolRegistry
from daemon.answer.voice import LocalVoice, VoiceError
from daemon.audio.frames import AudioChunk
from daemon.config.settings import Secrets, Settings
from daemon.observe.trace import Trace

log = logging.getLogger(__name__)

# Failures that say nothing about the cloud's health (the user's budget, a missing key, a 60-min expiry).
NOT_OUTAGES = {FailureReason.NO_API_KEY, FailureReason.COST_LIMIT, FailureReason.EXPIRED}


class CloudResponder:
    """Responder (see daemon.answer.responder) backed by the Realtime API, with the local voice as fallback."""

    def __init__(
        self,
        settings: Settings,
        secrets: Secrets,
        trace: Trace,
        voice: LocalVoice | None,
        tools: ToolRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.trace = trace
        self.voice = voice
        self.tools = tools or ToolRegistry(settings.tools)
        self.client = RealtimeClient(
            settings.realtime,
            settings.cost,
            secrets.openai_api_key,
            self.tools,
            trace,
            spend=DailyCost(settings.state_dir),
        )
        fb = settings.fallback
        self.breaker = CircuitBreaker(fb.breaker_failures, fb.probe_min_s, fb.probe_max_s)
        self.prober = CloudProber(self.breaker, self.client.open, probe_timeout_s=settings.realtime.connect_timeout)
        self._opening: asyncio.Task[FailureReason | None] | None = None

    # --- capture side -------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Open (or reuse) the session now, while the user is still speaking."""
        if self._opening is None or self._opening.done():
            self._opening = asyncio.create_task(self._open(), name="hark-realtime-open")

    async def _open(self) -> FailureReason | None:
        if not self.breaker.allow():
            return FallbackReason.BREAKER_OPEN  # type: ignore[return-value]
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

    async def _ready(self) -> FailureReason | None:
        if self._opening is None:
            self.prepare()
        assert self._opening is not None
        failure = await self._opening
        if failure is not None:
            self.client.discard()
        return failure

    async def _stream(self) -> AsyncGenerator[AudioChunk, None]:
        """Answer audio as it arrives; text-mode answers go through the local voice sentence by sentence."""
        failure: list[FailureReason] = []
        heard = False
        if self.settings.realtime.output == "text" and self.voice is not None:
            async for chunk in self.voice.speak_stream(self._text(failure)):
                heard = True
                yield chunk
        else:
            async for ev in self.client.events():
                if isinstance(ev, AudioDelta):
                    heard = True
                    yield AudioChunk(ev.pcm24k, RATE_HZ)
                elif not self._bookkeep(ev, failure):
                    break
        if failure:
            log.warning(
                "the cloud answer failed (%s)%s",
                failure[0].value,
                " after part of it played" if heard else "",
            )
            async for chunk in self._fallback(failure[0]):
                yield chunk

    async def _text(self, failure: list[FailureReason]) -> AsyncIterator[str]:
        async for ev in self.client.events():
            if isinstance(ev, TextDelta):
                yield ev.text
            elif not self._bookkeep(ev, failure):
                return

    def _bookkeep(self, ev: object, failure: list[FailureReason]) -> bool:
        """Side events of a response; False when the response ended in a failure."""
        if isinstance(ev, Transcript) and not ev.final:
            self.trace.emit("transcript_delta", role=ev.role, text=ev.text)
        elif isinstance(ev, ResponseDone):
            self.breaker.record_success()
        elif isinstance(ev, Failure):
            self._record(ev.reason)
            failure.append(ev.reason)
            return False
        return True

    def _record(self, reason: FailureReason) -> None:
        if reason in NOT_OUTAGES:
            return
        was = self.breaker.state
        self.breaker.record_failure()
        if was == "closed" and self.breaker.state == "open":
            log.warning(
                "the cloud failed %d times in a row: answering locally at once and probing in the background",
                self.settings.fallback.breaker_failures,
            )
            self.trace.emit("breaker", state="open")
            self.prober.start()

    async def _fallback(self, reason: FailureReason | FallbackReason) -> AsyncGenerator[AudioChunk, None]:
        text = message_for(reason, self.settings.fallback.messages)
        self.trace.emit("fallback", reason=reason.value, text=text)
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
