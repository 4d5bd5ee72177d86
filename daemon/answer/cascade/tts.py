"""The voice: one sentence at a time → audio chunks, from the local Piper voice or an OpenAI-compatible
`/v1/audio/speech` stream (raw 24 kHz PCM16, played as it arrives).

Why per sentence: the first sentence plays while the model is still writing the second; and after a
barge-in, the sentences that were played are exactly what the user heard.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

from openai import AsyncOpenAI

from daemon.answer.cascade.stage import StageFailure, classify, url_of, within
from daemon.answer.reasons import FallbackReason
from daemon.answer.voice import LocalVoice, VoiceError
from daemon.audio.frames import AudioChunk
from daemon.config.settings import CascadeTtsSettings, CostSettings
from daemon.observe import events as ev
from daemon.observe.bus import EventBus

log = logging.getLogger(__name__)
PCM_RATE_HZ = 24_000
"""`response_format = "pcm"` is 24 kHz mono PCM16 little-endian."""


class SentenceVoice(Protocol):
    def speak(self, sentence: str) -> AsyncIterator[AudioChunk]:
        """The sentence's audio as it is made; raises StageFailure when it cannot be spoken."""


class PiperSentences:
    """The local voice (no cost, no network), in pieces: a sentence starts playing once its first ~90 ms
    are rendered, not once all of it is (daemon.answer.piper_pieces)."""

    def __init__(self, voice: LocalVoice, cache_dir: Path) -> None:
        self.voice = voice
        voice.enable_pieces(cache_dir)

    async def speak(self, sentence: str) -> AsyncIterator[AudioChunk]:
        try:
            async for chunk in self.voice.speak(sentence, in_pieces=True):
                yield chunk
        except VoiceError as e:
            raise StageFailure("tts", FallbackReason.ERROR, str(e)) from e


class RemoteSpeech:
    """`audio.speech` with `response_format = "pcm"`, streamed (gpt-4o-mini-tts, speaches, ...)."""

    def __init__(
        self,
        settings: CascadeTtsSettings,
        client: AsyncOpenAI,
        prices: CostSettings,
        bus: EventBus,
        account: Callable[[ev.CascadeUsage], None],
    ) -> None:
        self.settings = settings
        self.client = client
        self.prices = prices
        self.bus = bus
        self._account = account

    async def speak(self, sentence: str) -> AsyncIterator[AudioChunk]:
        s = self.settings
        kwargs: dict[str, object] = {
            "model": s.model,
            "voice": s.voice,
            "input": sentence,
            "response_format": "pcm",
        }
        if s.instructions:
            kwargs["instructions"] = s.instructions
        if s.speed != 1.0:
            kwargs["speed"] = s.speed
        self.bus.publish(ev.CascadeRequest("tts", s.model, url_of(s)))
        sent = time.monotonic()
        nbytes = 0
        carry = b""
        try:
            async with self.client.audio.speech.with_streaming_response.create(
                **kwargs,  # type: ignore[arg-type]
                timeout=s.timeout_s,
            ) as response:
                # the bytes as received: the first audio plays at once
                async for data in within(response.iter_bytes(), s.timeout_s):
                    if nbytes == 0 and data:
                        self.bus.publish(ev.CascadeFirst("tts", round((time.monotonic() - sent) * 1000, 1)))
                    nbytes += len(data)
                    whole, carry = _whole_samples(carry + data)
                    if whole:
                        yield AudioChunk(whole, PCM_RATE_HZ)
        except StageFailure:
            raise
        except Exception as e:  # every SDK/network failure maps to one reason (stage.classify)
            raise classify("tts", e, nbytes > 0) from e
        finally:
            self._charge(sentence, nbytes)

    def _charge(self, sentence: str, nbytes: int) -> None:
        audio_s = nbytes / 2 / PCM_RATE_HZ
        cost = audio_s / 60 * self.prices.tts_per_minute
        self._account(
            ev.CascadeUsage(
                "tts", self.settings.model, round(cost, 8), audio_s=round(audio_s, 3), characters=len(sentence)
            )
        )


def _whole_samples(data: bytes) -> tuple[bytes, bytes]:
    """Split off an odd trailing byte (HTTP chunks need not end on a sample)."""
    cut = len(data) - len(data) % 2
    return data[:cut], data[cut:]
