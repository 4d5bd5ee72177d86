"""A responder that is built in the background, so start-up does not wait for the cloud client.

Why: the Realtime client pulls in the openai SDK (≈ 1–2 s of imports here, more on a Pi), and listening for
the wake word needs none of it. `hark run` sends READY=1 as soon as the wake model and the microphone are up;
this stand-in is the assistant's responder meanwhile. Calls made before the real responder exists (a wake
word in the first second: prepare, the user's audio, a discard or an interrupt) are kept in order and
replayed on it the moment it is built, so nothing said is lost; an answer waits for it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from daemon.answer.responder import Responder
from daemon.audio.frames import AudioChunk

log = logging.getLogger(__name__)

_Call = Callable[[Responder], Any]


class DeferredResponder:
    """Stands in for a responder that `build()` makes in the background; same interface (Responder)."""

    def __init__(self, build: Callable[[], Awaitable[Responder]]) -> None:
        self._real: Responder | None = None
        self._calls: list[_Call] = []
        self._task = asyncio.get_running_loop().create_task(self._make(build), name="hark-responder-build")
        self._task.add_done_callback(_report)

    @property
    def ready(self) -> bool:
        return self._real is not None

    async def wait(self) -> Responder:
        """The real responder, once it is built and every earlier call has been replayed on it."""
        await asyncio.shield(self._task)
        assert self._real is not None
        return self._real

    async def _make(self, build: Callable[[], Awaitable[Responder]]) -> None:
        real = await build()
        while self._calls:  # replay in order; calls made meanwhile join the end of the list
            result = self._calls.pop(0)(real)
            if inspect.isawaitable(result):
                await result
        self._real = real
        log.info("responder ready")

    def _call(self, call: _Call) -> None:
        if self._real is not None:
            call(self._real)
        else:
            self._calls.append(call)

    def prepare(self) -> None:
        self._call(lambda r: r.prepare())

    def append(self, pcm16k: bytes) -> None:
        self._call(lambda r: r.append(pcm16k))

    def discard(self) -> None:
        self._call(lambda r: r.discard())

    async def answer(self) -> AsyncGenerator[AudioChunk, None]:
        real = await self.wait()
        async for chunk in real.answer():
            yield chunk

    async def ask(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        real = await self.wait()
        async for chunk in real.ask(text):
            yield chunk

    async def interrupt(self, played_ms: int) -> None:
        if self._real is not None:
            await self._real.interrupt(played_ms)
        else:
            self._calls.append(lambda r: r.interrupt(played_ms))

    async def aclose(self) -> None:
        if not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                return
        elif self._task.exception() is not None:
            return
        if self._real is not None:
            await self._real.aclose()


def _report(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        error = task.exception()
        log.error("the responder could not be built: %s: %s; answers will fail", type(error).__name__, error)
