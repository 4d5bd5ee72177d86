"""The command responder decides in the pause after the speech, and only keeps that decision when no speech
followed it (the whole daemon with the responder: tests/intents/test_commands_daemon.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import numpy as np
import pytest

from daemon.answer.fallback import FallbackGuard
from daemon.answer.tools import ToolRegistry
from daemon.audio.frames import AudioChunk
from daemon.config import loader
from daemon.config.settings import FallbackSettings
from daemon.intents.recognizer import Recognition
from daemon.intents.responder import PAUSE_MS, CommandResponder
from daemon.observe import events as ev
from daemon.observe.bus import EventBus
from tests.intents.household import CONFIG
from tests.speech import Speech, read_wav

RATE = 16000
FRAME = 480 * 2  # 30 ms, as the daemon appends


class Cloud:
    """The cloud side as the command responder sees it, with no network: it keeps what it is handed."""

    def __init__(self, bus: EventBus) -> None:
        async def probe() -> None:
            return None

        self.guard = FallbackGuard(FallbackSettings(), bus, None, probe, probe_timeout_s=1.0)
        self.appended: list[bytes] = []

    def prepare(self) -> None:
        self.appended.clear()

    def append(self, pcm16k: bytes) -> None:
        self.appended.append(pcm16k)

    def discard(self) -> None:
        self.appended.clear()

    async def answer(self) -> AsyncGenerator[AudioChunk, None]:
        return
        yield

    async def ask(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        return
        yield

    async def interrupt(self, played_ms: int) -> None:
        return None

    async def aclose(self) -> None:
        return None


def pcm(*parts: np.ndarray | float) -> bytes:
    """Speech parts and pauses (seconds) in a -70 dBFS floor, as PCM16."""
    pieces = [np.zeros(round(p * RATE)) if isinstance(p, float) else p.astype(np.float64) for p in parts]
    x = np.concatenate(pieces)
    x += np.random.default_rng(0).normal(0.0, 32768 * 10 ** (-70 / 20), len(x))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16).tobytes()


async def feed(responder: CommandResponder, audio: bytes) -> None:
    for at in range(0, len(audio), FRAME):
        responder.append(audio[at : at + FRAME])


async def decided(responder: CommandResponder) -> Recognition:
    early = responder._early
    assert early is not None, "no decision was started in the pause"
    return await asyncio.wrap_future(early.decision)


@pytest.fixture
async def responder() -> AsyncIterator[CommandResponder]:
    bus = EventBus()
    settings = loader.from_dict({**CONFIG, "commands": {**CONFIG["commands"], "local": "first"}})
    made = CommandResponder(settings.commands, Cloud(bus), ToolRegistry(settings.tools), None, bus)
    assert await made.ready() is not None
    made.prepare()
    bus.publish(ev.SpeechStarted(0))
    yield made
    await made.aclose()


def speech_of(speech: Speech, text: str) -> np.ndarray:
    return read_wav(speech.piper(text))[0]


async def test_a_request_is_decided_in_the_pause_and_that_decision_is_kept(
    responder: CommandResponder, speech: Speech
) -> None:
    await feed(responder, pcm(0.3, speech_of(speech, "turn on the kitchen lights"), (PAUSE_MS + 30) / 1000))
    early = await decided(responder)
    assert early.command is not None and early.command.slots == {"room": "kitchen", "state": True}
    await feed(responder, pcm(0.1))  # the end of speech is declared a little later: nothing more was said
    assert await responder._recognize() is early


async def test_speech_after_the_pause_gets_a_decision_of_its_own(responder: CommandResponder, speech: Speech) -> None:
    await feed(responder, pcm(0.3, speech_of(speech, "turn on the kitchen"), 0.3))
    first = await decided(responder)
    assert first.command is None  # "turn on the kitchen" is no whole sentence
    await feed(responder, pcm(speech_of(speech, "lights"), 0.2))
    rec = await responder._recognize()
    assert rec is not first
    assert rec.command is not None and rec.command.slots == {"room": "kitchen", "state": True}
