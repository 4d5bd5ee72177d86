"""Speech to text: the captured request (16 kHz PCM16) → its transcript, streamed where the model streams.

The request is uploaded once, when the turn ends: nothing leaves the device before the wake word, and
nothing of a turn leaves before the user has finished (the same promise as the Realtime backend's).
"""

from __future__ import annotations

import io
import logging
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openai import AsyncOpenAI

from daemon.answer.cascade.stage import StageFailure, classify, finish_later, url_of, within
from daemon.answer.reasons import FallbackReason
from daemon.audio.frames import INPUT_RATE_HZ
from daemon.config.settings import CascadeSttSettings
from daemon.observe import events as ev
from daemon.observe.bus import EventBus

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Heard:
    """What the user said, and what transcribing it used."""

    text: str
    audio_s: float
    input_tokens: int | None = None
    output_tokens: int | None = None


def to_wav(pcm16k: bytes) -> bytes:
    """The request as a WAV file (what every transcription server accepts)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(INPUT_RATE_HZ)
        w.writeframes(pcm16k)
    return buf.getvalue()


class Transcriber:
    def __init__(self, settings: CascadeSttSettings, client: AsyncOpenAI, bus: EventBus) -> None:
        self.settings = settings
        self.client = client
        self.bus = bus

    async def transcribe(self, pcm16k: bytes, on_delta: Callable[[str], None] | None = None) -> Heard:
        """Upload and transcribe; raises StageFailure (with the reason to speak) on any failure."""
        s = self.settings
        audio_s = len(pcm16k) / 2 / INPUT_RATE_HZ
        kwargs: dict[str, Any] = {"file": ("request.wav", to_wav(pcm16k), "audio/wav"), "model": s.model}
        if s.language:
            kwargs["language"] = s.language
        self.bus.publish(ev.CascadeRequest("stt", s.model, url_of(s)))
        sent = time.monotonic()
        started = False
        try:
            if not s.streams:
                result = await self.client.audio.transcriptions.create(**kwargs, timeout=s.timeout_s)
                self._first(sent)
                return Heard(str(result.text).strip(), audio_s, *_tokens(getattr(result, "usage", None)))
            stream = await self.client.audio.transcriptions.create(**kwargs, stream=True, timeout=s.timeout_s)
            done = False
            try:
                async for event in within(stream, s.timeout_s):
                    kind = getattr(event, "type", None)
                    if kind == "transcript.text.delta":
                        if not started:
                            started = True
                            self._first(sent)
                        if on_delta is not None:
                            on_delta(str(event.delta))
                    elif kind == "transcript.text.done":
                        if not started:
                            self._first(sent)
                        done = True  # the transcript goes to the model now; the body's end is read meanwhile
                        return Heard(str(event.text).strip(), audio_s, *_tokens(getattr(event, "usage", None)))
                    else:
                        log.debug("transcription stream: ignoring event %r", kind)
            finally:
                if done:
                    finish_later(stream, s.timeout_s)
                else:
                    await stream.close()
            raise StageFailure("stt", FallbackReason.DROPPED, "the stream ended before transcript.text.done")
        except StageFailure:
            raise
        except Exception as e:  # every SDK/network failure maps to one reason (stage.classify)
            raise classify("stt", e, started) from e

    def _first(self, sent: float) -> None:
        self.bus.publish(ev.CascadeFirst("stt", round((time.monotonic() - sent) * 1000, 1)))


def _tokens(usage: Any) -> tuple[int | None, int | None]:
    if usage is None or getattr(usage, "type", "tokens") != "tokens":
        return None, None
    i, o = getattr(usage, "input_tokens", None), getattr(usage, "output_tokens", None)
    return (i if isinstance(i, int) else None), (o if isinstance(o, int) else None)
