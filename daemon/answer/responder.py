"""What answers a request. The assistant owns states and playback; a responder only turns a captured
request into a stream of answer audio, so the cloud, the local fallback and the chime are interchangeable."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

from daemon.audio.frames import AudioChunk


class Responder(Protocol):
    def prepare(self) -> None:
        """A turn begins (wake word, listen command, follow-up): warm up, e.g. open the session now."""

    def append(self, pcm16k: bytes) -> None:
        """The user's audio as it is captured (16 kHz PCM16); never called outside a turn."""

    def discard(self) -> None:
        """Nothing was said: forget what was appended."""

    def answer(self) -> AsyncGenerator[AudioChunk, None]:
        """The request ended: stream the spoken answer."""

    def ask(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        """A typed question (MQTT `ask`): stream the spoken answer."""

    async def interrupt(self, played_ms: int) -> None:
        """Barge-in or stop: the answer was cut after `played_ms` of it was heard."""

    async def aclose(self) -> None: ...


class ChimeResponder:
    """Answers every request with the "done" chime: the whole loop works with no cloud at all."""

    def __init__(self, chime: AudioChunk | None) -> None:
        self._chime = chime

    def prepare(self) -> None:
        pass

    def append(self, pcm16k: bytes) -> None:
        pass

    def discard(self) -> None:
        pass

    async def answer(self) -> AsyncGenerator[AudioChunk, None]:
        if self._chime is not None:
            yield self._chime

    async def ask(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        async for chunk in self.answer():
            yield chunk

    async def interrupt(self, played_ms: int) -> None:
        pass

    async def aclose(self) -> None:
        pass
