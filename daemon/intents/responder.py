"""Declared commands answered on the device: a responder around the cloud one (see daemon.answer.responder).

`offline`: the request streams to the cloud as always; only when the cloud can't answer does the cloud
responder ask `instead_of_apology`, and a recognized command is carried out and confirmed instead.
`first`: the request audio is held here until the end of the request, the recognizer decides, and a command
is carried out without a byte reaching the cloud; anything else is flushed to the cloud in order, so it hears
exactly the same audio, later by the recognizer's time only.

The recognizer starts early: in the pause after the speech (`PAUSE_MS`), before the end of speech is declared
(the turn model is asked ~200 ms into the pause and answers tens of ms later), on the audio so far. It decodes
the speech and a margin padded with the room's quiet (see daemon.intents.recognizer.speech_span), so when no
speech followed, that decision is the one the whole request would get, and it is used as it stands; speech
after it starts a fresh decision. Mode `first` does so on every request; `offline` only once the cloud is
known to be down (an error this turn, or the breaker open), so a working cloud costs no local decoding.

The action is the tool call the cloud model would make (`ToolRegistry.call`), so MQTT sees the same topic
and payload whichever side understood the request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from daemon.answer.fallback import FallbackGuard
from daemon.answer.reasons import FallbackReason
from daemon.answer.responder import Responder
from daemon.answer.tools import ToolRegistry
from daemon.answer.voice import LocalVoice, say_or_log
from daemon.audio.frames import AudioChunk
from daemon.config.settings import CommandSettings
from daemon.intents.recognizer import (
    Recognition,
    Recognizer,
    RecognizerError,
    SpeechSpan,
    frame_levels_db,
    quiet_after_sound_ms,
    speech_span,
)
from daemon.intents.spec import CommandBook
from daemon.observe import events as ev
from daemon.observe.bus import EventBus

log = logging.getLogger(__name__)

FAILED = "Sorry, that didn't work."
LEAD_MS = 450
"""Audio kept before the endpointer's start of speech (it fires ~120 ms in; the rest is margin): what
came before, the tail of the wake word included, is not part of the command."""
DECIDE_TIMEOUT_S = 5.0
"""A decision normally takes 0.1–0.3 s; a recognizer stuck this long is left out of the turn (the request then
goes on as if it were no command: to the cloud, or the apology), so a turn never hangs on it."""
FRAME_BYTES = 320
"""10 ms of 16 kHz PCM16: the level frame."""
PAUSE_MS = 90
"""Quiet after the last sound at which the recognizer starts on the request so far (see the module docstring;
daemon.intents.recognizer.QUIET_DB says what is quiet)."""


@dataclass(frozen=True, slots=True)
class _Early:
    """A decision started in the pause, on the first `cut` bytes of the request (from `speech_from`)."""

    speech_from: int
    cut: int
    span: SpeechSpan
    decision: concurrent.futures.Future[Recognition]


class Guarded(Responder, Protocol):
    """A cloud backend (Realtime or cascade): a responder whose failures go through a FallbackGuard."""

    guard: FallbackGuard


class CommandResponder:
    """Responder: the cloud responder, with the household's declared commands understood on the device."""

    def __init__(
        self,
        cfg: CommandSettings,
        inner: Guarded,
        tools: ToolRegistry,
        voice: LocalVoice | None,
        bus: EventBus,
    ) -> None:
        self.cfg = cfg
        self.inner = inner
        self.tools = tools
        self.voice = voice
        self.bus = bus
        self.book = CommandBook(cfg)
        # one worker thread owns the decoder (not thread-safe); it loads there too, off the event loop
        self._worker = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hark-commands")
        self._recognizer = self._worker.submit(Recognizer, self.book, cfg.min_score)
        self._audio: list[bytes] = []
        self._held = False
        self._typed: str | None = None
        self._decided: Recognition | None = None
        self._speech_from = 0
        """Byte offset in the turn's audio where the request's speech (minus LEAD_MS) begins."""
        self._size = 0
        self._levels: list[np.ndarray] = []
        """The level of every 10 ms of the turn's audio so far (for the pause, without re-reading it all)."""
        self._speaking = False
        self._cloud_down = False
        self._early: _Early | None = None
        inner.guard.instead_of_apology = self._instead_of_apology
        bus.subscribe(ev.SpeechStarted, self._on_speech_started)
        bus.subscribe(ev.RealtimeError, self._on_cloud_error)

    async def ready(self) -> Recognizer | None:
        """The loaded recognizer, or None when it could not be built (logged once; commands are then off)."""
        try:
            return await asyncio.wrap_future(self._recognizer)
        except Exception as e:
            if not getattr(self, "_load_logged", False):
                self._load_logged = True
                log.error("local commands are off: the recognizer could not be built: %s", e)
            return None

    # --- capture side -------------------------------------------------------------------------------------

    def prepare(self) -> None:
        self._new_turn(typed=None)
        self._held = self.cfg.local == "first"
        self.inner.prepare()

    def _on_speech_started(self, event: ev.SpeechStarted) -> None:
        # published right after the frame that confirmed it was appended: the buffer ends at that frame
        self._speech_from = max(0, self._size - LEAD_MS * 32) & ~1
        self._speaking = True

    def _on_cloud_error(self, event: ev.RealtimeError) -> None:
        self._cloud_down = True

    def _new_turn(self, typed: str | None) -> None:
        self._audio.clear()
        self._levels.clear()
        self._size = 0
        self._speech_from = 0
        self._speaking = False
        self._cloud_down = False
        self._early = None
        self._typed = typed
        self._decided = None

    def append(self, pcm16k: bytes) -> None:
        self._audio.append(pcm16k)
        self._levels.append(frame_levels_db(pcm16k))  # capture frames are whole 10 ms frames (30 ms)
        self._size += len(pcm16k)
        if not self._held:
            self.inner.append(pcm16k)
        if self._speaking:
            self._start_early()

    def discard(self) -> None:
        self._audio.clear()
        self._levels.clear()
        self._size = 0
        self._speaking = False
        self.inner.discard()

    def _start_early(self) -> None:
        """In a pause after the speech: start deciding on the request so far (at most one decision at a time)."""
        early = self._early
        if early is not None and not early.decision.done():
            return
        wanted = self.cfg.local == "first" or (
            self.cfg.local == "offline" and (self._cloud_down or self.inner.guard.open)
        )
        if not wanted or not self._recognizer.done() or self._recognizer.exception() is not None:
            return
        levels = np.concatenate(self._levels)[self._speech_from // FRAME_BYTES :]
        quiet_ms = quiet_after_sound_ms(levels)
        if quiet_ms < PAUSE_MS:
            return  # still speaking (or nothing stands out as speech yet)
        sound_end = len(levels) * FRAME_BYTES - quiet_ms * 32
        if early is not None and early.speech_from == self._speech_from and sound_end <= early.cut:
            return  # this speech is decided already
        audio = b"".join(self._audio)[self._speech_from :]
        span = speech_span(audio)
        decision = self._worker.submit(self._recognizer.result().recognize, audio)
        self._early = _Early(self._speech_from, len(audio), span, decision)

    # --- answer side --------------------------------------------------------------------------------------

    async def answer(self) -> AsyncGenerator[AudioChunk, None]:
        if self._held:
            self._held = False
            rec = await self._recognize()
            if rec is not None and rec.command is not None:
                async for chunk in self._carry_out(rec):
                    yield chunk
                return
            for pcm in self._audio:  # not a command: the cloud hears the whole request, in order
                self.inner.append(pcm)
        async for chunk in self.inner.answer():
            yield chunk

    async def ask(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        self._new_turn(typed=text)
        if self.cfg.local == "first":
            command = self.book.match(text.strip().lower().rstrip(".!?"))
            if command is not None:
                async for chunk in self._carry_out(Recognition(command, text, 0.0, 1.0, 0.0)):
                    yield chunk
                return
        async for chunk in self.inner.ask(text):
            yield chunk

    async def _recognize(self) -> Recognition | None:
        """Decide once per turn (the audio in the worker thread; a typed question by matching its text)."""
        if self._decided is not None:
            return self._decided
        if self._typed is not None:
            command = self.book.match(self._typed.strip().lower().rstrip(".!?"))
            self._decided = Recognition(command, self._typed, 0.0, 1.0 if command else 0.0, 0.0)
            return self._decided
        recognizer = await self.ready()
        if recognizer is None:
            return None
        audio = b"".join(self._audio)[self._speech_from :]
        early = self._early
        try:
            if early is not None and self._covers(early, speech_span(audio)):
                decision = early.decision
                log.debug(
                    "local commands: decided in the pause, %d ms of audio before the end",
                    (len(audio) - early.cut) // 32,
                )
            else:
                decision = self._worker.submit(recognizer.recognize, audio)
            rec = await asyncio.wait_for(asyncio.wrap_future(decision), DECIDE_TIMEOUT_S)
        except RecognizerError as e:
            log.error("the local command recognizer failed on this request: %s", e)
            rec = Recognition(None, "", 0.0, 0.0, 0.0, f"recognizer failed: {e}")
        except asyncio.TimeoutError:
            log.error(
                "the local command recognizer gave no decision in %.0f s: this request goes on without it",
                DECIDE_TIMEOUT_S,
            )
            rec = Recognition(None, "", 0.0, 0.0, 0.0, "recognizer timed out")
        self._decided = rec
        if rec.command is None:
            log.info("not a local command (%s): %r, score %.2f, %.0f ms", rec.why_not, rec.text, rec.score, rec.ms)
        return rec

    def _covers(self, early: _Early, span: SpeechSpan) -> bool:
        """No speech came after the early decision's cut: that decision is the one this request gets."""
        return early.speech_from == self._speech_from and span.start == early.span.start and span.sound_end <= early.cut

    async def _instead_of_apology(self, reason: FallbackReason) -> AsyncIterator[AudioChunk] | None:
        """The cloud can't answer: a declared command is still carried out (modes offline and first)."""
        if self.cfg.local == "off":
            return None
        rec = await self._recognize()
        if rec is None or rec.command is None:
            return None
        log.info("the cloud can't answer (%s): carrying out local command %s", reason.value, rec.command.intent.name)
        self._decided = Recognition(None, rec.text, rec.score, rec.confidence, rec.ms, "already carried out")
        return self._carry_out(rec)

    async def _carry_out(self, rec: Recognition) -> AsyncGenerator[AudioChunk, None]:
        command = rec.command
        assert command is not None
        intent = command.intent
        self.bus.publish(ev.CommandRecognized(intent.name, dict(command.slots), round(rec.confidence, 3), rec.ms))
        call_id = f"local_{uuid.uuid4().hex[:12]}"
        result = await self.tools.call(intent.tool, call_id, command.arguments_json)
        text = command.confirmation
        error = _error_of(result)
        if error:
            log.warning("local command %s: tool %s failed: %s", intent.name, intent.tool, error)
            text = FAILED
        else:
            log.info("local command %s: %s(%s) → %s", intent.name, intent.tool, command.arguments_json, result)
        if not text:
            return
        async for chunk in say_or_log(self.voice, text):
            yield chunk

    async def interrupt(self, played_ms: int) -> None:
        await self.inner.interrupt(played_ms)

    async def aclose(self) -> None:
        await self.inner.aclose()
        if self._recognizer.done() and self._recognizer.exception() is None:
            self._recognizer.result().close()
        self._worker.shutdown(wait=False, cancel_futures=True)


def _error_of(result: str) -> str:
    try:
        data = json.loads(result)
    except ValueError:
        return ""
    return str(data["error"]) if isinstance(data, dict) and "error" in data else ""
