"""The assistant: routes frames and events between the parts and owns the turn.

Data flows one way: capture frames → wake detector / endpointer → state machine → responder → speaker.
Everything runs on one asyncio loop; ONNX inference runs in a single worker thread so the loop (and the
Realtime websocket's keepalive) never stalls. Every state change goes through `StateMachine.handle`, and
every turn ends in `finally` with a way back to idle, so no lost event can leave the speaker stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from daemon.answer.responder import Responder
from daemon.answer.voice import LocalVoice
from daemon.audio.frames import (
    FRAME_SAMPLES,
    INPUT_RATE_HZ,
    WAKE_STEP_SAMPLES,
    AudioChunk,
    AudioFrame,
    DeviceLost,
    DeviceRestored,
)
from daemon.audio.sink import AudioSink
from daemon.audio.source import AudioSource
from daemon.config.settings import Settings
from daemon.core.choices import ChoiceStore
from daemon.core.controller import Controls
from daemon.core.states import Deadlines, State, StateMachine, Transition, Trigger
from daemon.listen.detections import NoSpeech, SpeechEnded, SpeechStarted, WakeDetected
from daemon.listen.endpoint import Endpointer
from daemon.listen.wake import WakeDetector
from daemon.observe.trace import Trace

log = logging.getLogger(__name__)
ACTIVE = (State.LISTENING, State.PROCESSING, State.RESPONDING)
SILENCE = bytes(FRAME_SAMPLES * 2)


async def cancel_task(task: asyncio.Task[object] | None) -> None:
    """Cancel and wait, swallowing the CancelledError: the one helper for barge-in, stop and shutdown."""
    if task is None or task.done():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@dataclass
class Parts:
    """Everything the assistant drives; built by daemon.app so tests can build it the same way."""

    source: AudioSource
    sink: AudioSink
    wake: WakeDetector
    endpointer: Endpointer
    responder: Responder
    voice: LocalVoice | None  # announcements and fallback (None: no local voice installed)
    chimes: dict[str, AudioChunk | None]
    choices: ChoiceStore
    on_frame: list[Callable[[], None]] = field(default_factory=list)  # watchdog pet, metrics


def deadlines_for(settings: Settings) -> Deadlines:
    ep, rt = settings.endpoint, settings.realtime
    return Deadlines(
        listening_s=max(ep.start_timeout_s, settings.conversation.followup_seconds) + ep.max_utterance_s + 2.0,
        processing_s=rt.connect_timeout + rt.response_timeout + 10.0,
        responding_s=300.0,
    )


class Assistant(Controls):
    """Owns the state machine and the current turn; also the Controller that MQTT and the CLI call."""

    def __init__(self, settings: Settings, parts: Parts, trace: Trace) -> None:
        self.settings = settings
        self.parts = parts
        self.trace = trace
        self.sm = StateMachine(deadlines_for(settings), self._on_change)
        self._infer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hark-infer")
        frame_ms = FRAME_SAMPLES * 1000 // INPUT_RATE_HZ
        self._preroll: deque[AudioFrame] = deque(maxlen=max(1, settings.endpoint.preroll_ms // frame_ms))
        self._wake_block = bytearray()
        self._wake_block_start = 0
        self._turn: asyncio.Task[None] | None = None
        self._announce_lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_sample = 0
        self._stopping = False
        self._background: set[asyncio.Task[object]] = set()
        self.wake_enabled = parts.choices.current.wake_enabled

    # --- the main loop ---------------------------------------------------------------------------------

    async def run(self) -> int:
        """Consume the capture source until it ends (a WAV) or the daemon is stopped. Returns exit status."""
        source = self.parts.source
        if self.parts.choices.current.muted:
            self.sm.handle(Trigger.MUTE, "restored from the last run")
        self.parts.sink.volume = self.parts.choices.current.volume
        async for item in source:
            if isinstance(item, DeviceLost):
                self._device_lost(item.detail)
            elif isinstance(item, DeviceRestored):
                self.trace.emit("device_restored", detail=item.detail)
                self.sm.handle(Trigger.DEVICE_RESTORED, item.detail)
            else:
                await self.on_frame(item)
            if self._stopping:
                break
        if not self._stopping:
            await self._finish_after_input_end()
        return 0

    async def on_frame(self, frame: AudioFrame) -> None:
        for hook in self.parts.on_frame:
            hook()
        self._last_sample = frame.end_sample
        state = self.sm.state
        if state is State.LISTENING:
            self.parts.responder.append(frame.pcm)
            for ev in self.parts.endpointer.process(frame):
                self._on_endpoint(ev)
        elif self.wake_enabled and state in (State.IDLE, State.PROCESSING, State.RESPONDING):
            block = self._wake_input(frame)
            if block is not None:
                strict = state is State.RESPONDING
                loop = asyncio.get_running_loop()
                found = await loop.run_in_executor(self._infer, self.parts.wake.process, block, strict)
                if found:
                    await self._on_wake(found[0])
        self._preroll.append(frame)

    def _wake_input(self, frame: AudioFrame) -> AudioFrame | None:
        """Gather capture frames into openWakeWord's 80 ms step: one inference (one thread hop) per step."""
        if not self._wake_block or frame.sample != self._wake_block_start + len(self._wake_block) // 2:
            self._wake_block = bytearray()  # first frame, or a gap (the detector was not fed meanwhile)
            self._wake_block_start = frame.sample
        self._wake_block += frame.pcm
        if len(self._wake_block) < WAKE_STEP_SAMPLES * 2:
            return None
        block = AudioFrame(bytes(self._wake_block[: WAKE_STEP_SAMPLES * 2]), self._wake_block_start)
        del self._wake_block[: WAKE_STEP_SAMPLES * 2]
        self._wake_block_start += WAKE_STEP_SAMPLES
        return block

    async def _finish_after_input_end(self) -> None:
        """The WAV ended: the room goes quiet. Finish the turn in progress (answer played), then return."""
        sample = self._last_sample
        pace = self.settings.audio.realtime_pace and self.settings.audio.input.startswith("wav:")
        limit = deadlines_for(self.settings)
        bound = asyncio.get_running_loop().time() + limit.listening_s + limit.processing_s + limit.responding_s
        while self.sm.state in ACTIVE and asyncio.get_running_loop().time() < bound:
            if self.sm.state is State.LISTENING:
                await self.on_frame(AudioFrame(SILENCE, sample))
                sample += FRAME_SAMPLES
                await asyncio.sleep(FRAME_SAMPLES / INPUT_RATE_HZ if pace else 0)
            else:
                await asyncio.sleep(0.02)
        async with self._announce_lock:  # let a queued announcement finish too
            pass

    # --- what the listening parts report ---------------------------------------------------------------

    async def _on_wake(self, det: WakeDetected) -> None:
        self.trace.emit(
            "wake_detected",
            model=det.model,
            score=round(det.score, 3),
            sample=det.sample,
            state=str(self.sm.state),
        )
        if self.sm.state in (State.PROCESSING, State.RESPONDING):
            await self._interrupt("barge-in")
        self._begin_listening(f"wake word {det.model}", det.sample + WAKE_STEP_SAMPLES, preroll=True)

    def _begin_listening(self, reason: str, sample: int, preroll: bool) -> bool:
        if self.sm.handle(Trigger.WAKE, reason) is None:
            return False
        self._play_chime("wake")
        self.parts.endpointer.start(sample)
        self.parts.responder.prepare()
        if preroll:
            for frame in self._preroll:
                self.parts.responder.append(frame.pcm)
        return True

    def _on_endpoint(self, ev: SpeechStarted | SpeechEnded | NoSpeech) -> None:
        if isinstance(ev, SpeechStarted):
            self.trace.emit("speech_started", sample=ev.sample)
        elif isinstance(ev, SpeechEnded):
            self.trace.emit("speech_ended", sample=ev.sample, timed_out=ev.timed_out)
            if self.sm.handle(Trigger.SPEECH_ENDED, "max length" if ev.timed_out else "end of speech"):
                self._start_turn(self.parts.responder.answer())
        else:
            self.trace.emit("no_speech", sample=ev.sample)
            self.parts.responder.discard()
            self.sm.handle(Trigger.NO_SPEECH)

    def _device_lost(self, detail: str) -> None:
        self.trace.emit("device_lost", detail=detail)
        if self.sm.state in ACTIVE:
            self._spawn(self._interrupt("microphone lost"))
        self.sm.handle(Trigger.DEVICE_LOST, detail)

    # --- the turn ----------------------------------------------------------------------------------------

    def _start_turn(self, chunks: AsyncGenerator[AudioChunk, None]) -> None:
        self._turn = asyncio.create_task(self._play_answer(chunks), name="hark-turn")

    async def _play_answer(self, chunks: AsyncGenerator[AudioChunk, None]) -> None:
        sink = self.parts.sink
        started = False
        try:
            async for chunk in chunks:
                if not started:
                    started = True
                    self.sm.handle(Trigger.ANSWER_STARTED)
                    sink.begin()
                sink.write(chunk)
            if started:
                await sink.drain()
            if self._turn is not asyncio.current_task():
                return  # interrupted while the last audio played: the interrupter owns the state now
            self._turn = None
            if not started:
                self._play_chime("error")
                self.sm.handle(Trigger.FAILED, "no answer")
            elif self.settings.conversation.followup_seconds > 0 and self.sm.state is State.RESPONDING:
                self._begin_followup()
            else:
                self.sm.handle(Trigger.ANSWER_DONE)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("answer failed: %s", e)
            self.trace.emit("error", code="answer_failed", message=str(e))
            sink.stop()
            self._play_chime("error")
            self.sm.handle(Trigger.FAILED, f"answer failed: {e}")
        finally:
            await chunks.aclose()

    def _begin_followup(self) -> None:
        if self.sm.handle(Trigger.FOLLOWUP, "follow-up window") is None:
            return
        self.parts.endpointer.start(self._last_sample, start_timeout_s=self.settings.conversation.followup_seconds)
        self.parts.responder.prepare()

    async def _interrupt(self, reason: str) -> int:
        """Silence the answer now, cancel the turn, tell the responder how much was heard."""
        turn, self._turn = self._turn, None  # detached first: a turn woken by the stop must not carry on
        played = int(self.parts.sink.stop())
        if turn is not asyncio.current_task():
            await cancel_task(turn)
        self.parts.endpointer.stop()
        await self.parts.responder.interrupt(played)
        self.trace.emit("interrupted", reason=reason, played_ms=played)
        return played

    async def shutdown(self) -> None:
        """SIGTERM: silence now, end the turn, close the responder."""
        self._stopping = True
        if self.sm.state in ACTIVE:
            with contextlib.suppress(Exception):
                await self._interrupt("shutdown")
        for task in list(self._background):
            await cancel_task(task)
        await self.parts.responder.aclose()
        self._infer.shutdown(wait=False, cancel_futures=True)

    # --- the one listener of state changes ------------------------------------------------------------------

    def _on_change(self, change: Transition) -> None:
        self.trace.emit(
            "state",
            **{
                "from": str(change.before),
                "to": str(change.after),
                "trigger": str(change.trigger),
                "reason": change.reason,
            },
        )
        log.info(
            "state %s → %s (%s%s)",
            change.before,
            change.after,
            change.trigger,
            f": {change.reason}" if change.reason else "",
        )
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.sm.deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            delay = max(0.0, deadline - time.monotonic())
            self._timer = loop.call_later(delay, self._on_timeout)
        if change.after is State.MUTED:
            self.parts.source.pause()
        elif change.before is State.MUTED:
            self.parts.source.resume()
        if change.after not in ACTIVE:
            self.parts.endpointer.stop()
            self._idle.set()
        if change.before in (State.LISTENING, State.MUTED, State.ERROR):
            self._reset_wake()  # detection resumes after a gap: its buffer still holds the old audio

    def _on_timeout(self) -> None:
        state = self.sm.state
        if state not in ACTIVE:
            return
        log.warning("%s took too long: back to idle", state)
        self._spawn(self._timeout_turn(state))

    async def _timeout_turn(self, state: State) -> None:
        if self.sm.state is not state:
            return
        await self._interrupt(f"{state} timed out")
        self.parts.responder.discard()
        self.sm.handle(Trigger.TIMEOUT, f"{state} timed out")

    def _reset_wake(self) -> None:
        """Forget the detector's buffered audio (it still holds the last wake phrase) before the next frame:
        submitted now to the single inference worker, so it runs before any later `process` call."""
        future = self._infer.submit(self.parts.wake.reset)
        future.add_done_callback(_log_failure)

    def _play_chime(self, kind: str) -> None:
        chime = self.parts.chimes.get(kind)
        if chime is None or self.parts.sink.playing:
            return
        self.parts.sink.begin()
        self.parts.sink.write(chime)

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        task: asyncio.Task[object] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _log_failure(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("wake detector reset failed: %s", future.exception())
