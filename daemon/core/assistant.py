"""The assistant: routes frames and events between the parts and owns the turn.

Data flows one way: capture frames → wake detector / endpointer → state machine → responder → speaker.
Everything runs on one asyncio loop; ONNX inference runs in a single worker thread so the loop (and the
Realtime websocket's keepalive) never stalls. Every state change goes through `StateMachine.handle`.

One owner for every decision: the state machine owns the state and whether the wake word is listened for;
the assistant owns the one running `Turn` (an answer or an announcement) and the announcement queue. A turn
ends by returning an `Outcome`, which only `_ended` applies; an interrupted turn is detached first, so
whatever it was doing when it was cut can never also end the turn. Commands (daemon.core.controller) run
one at a time, in the order they came, through `command()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
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
from daemon.core.arbitration import Arbiter, speech_level_dbfs
from daemon.core.choices import ChoiceStore
from daemon.core.states import ACTIVE, QUIET, Deadlines, State, StateMachine, Transition, Trigger
from daemon.core.turn import AnnouncementQueue, Outcome, PendingAnnouncement, Turn
from daemon.listen.gate import WakeGate
from daemon.listen.turn import TurnDetector, TurnEvent
from daemon.listen.wake import WakeDetector
from daemon.observe import events as ev
from daemon.observe.bus import EventBus
from daemon.observe.events import NoSpeech, SpeechEnded, WakeDetected
from daemon.system import tasks

log = logging.getLogger(__name__)
SILENCE = bytes(FRAME_SAMPLES * 2)
SHOWN_CHARS = 60


async def cancel_task(task: asyncio.Task[Any] | None) -> None:
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
    wake: WakeDetector | WakeGate  # WakeGate: the detector behind a voice-activity gate (wake.gate)
    endpointer: TurnDetector  # webrtcvad + the end-of-turn model
    responder: Responder
    voice: LocalVoice | None  # announcements and fallback (None: no local voice installed)
    chimes: dict[str, AudioChunk | None]
    choices: ChoiceStore
    on_frame: list[Callable[[], None]] = field(default_factory=list)  # watchdog pet, metrics
    arbiter: Arbiter | None = None  # wake arbitration with the other speakers (mqtt.arbitration_ms)


def deadlines_for(settings: Settings) -> Deadlines:
    ep, rt = settings.endpoint, settings.realtime
    return Deadlines(
        listening_s=max(ep.start_timeout_s, settings.conversation.followup_seconds) + ep.max_utterance_s + 2.0,
        processing_s=rt.connect_timeout + rt.response_timeout + 10.0,
        responding_s=300.0,
    )


class Assistant:
    """Owns the state machine, the current turn and the announcement queue."""

    def __init__(self, settings: Settings, parts: Parts, bus: EventBus) -> None:
        self.settings = settings
        self.parts = parts
        self.bus = bus
        self.sm = StateMachine(
            deadlines_for(settings), self._on_change, wake_enabled=parts.choices.current.wake_enabled
        )
        self._infer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hark-infer")
        frame_ms = FRAME_SAMPLES * 1000 // INPUT_RATE_HZ
        self._preroll: deque[AudioFrame] = deque(maxlen=max(1, settings.endpoint.preroll_ms // frame_ms))
        self._wake_block = bytearray()
        self._wake_linear: bytearray | None = None  # the same audio through the linear echo canceller
        self._wake_block_start = 0
        self._held: list[AudioFrame] = []  # frames captured while arbitrating
        self._replaying = False  # the held frames are being fed to the endpointer (see _arbitrate)
        self._turn: Turn | None = None
        self._queue = AnnouncementQueue(settings.announcements.queue_size)
        self._commands: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._command_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_sample = 0
        self._stopping = False

    @property
    def busy(self) -> bool:
        """An answer or announcement is running, or one is waiting to be spoken."""
        return self._turn is not None or len(self._queue) > 0

    # --- the main loop ---------------------------------------------------------------------------------

    async def run(self) -> int:
        """Consume the capture source until it ends (a WAV) or the daemon is stopped. Returns exit status."""
        source = self.parts.source
        if self.parts.choices.current.muted:
            self.sm.handle(Trigger.MUTE, "restored from the last run")
        self.parts.sink.volume = self.parts.choices.current.volume
        self._start_commands()
        async for item in source:
            if isinstance(item, DeviceLost):
                await self._device_lost(item.detail)
            elif isinstance(item, DeviceRestored):
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
        if self.sm.state is State.LISTENING and self._replaying:
            self._held.append(frame)  # the arbitration window's audio is still being replayed: keep the order
        elif self.sm.state is State.LISTENING:
            self.parts.responder.append(frame.pcm)
            for event in await self.parts.endpointer.process(frame, self._infer):
                self._on_endpoint(event)
        elif self.sm.state is State.ARBITRATING:
            self._held.append(frame)  # the request may start at once: kept for the winner, sent nowhere yet
        elif self.sm.listens_for_wake:
            block = self._wake_input(frame)
            if block is not None:
                strict = self.sm.state is State.RESPONDING or self._turn is not None
                loop = asyncio.get_running_loop()
                cleaned = self.parts.source.echo_cancelling
                found = await loop.run_in_executor(self._infer, self.parts.wake.process, block, strict, cleaned)
                if found:
                    await self._on_wake(found[0])
        self._preroll.append(frame)

    def _wake_input(self, frame: AudioFrame) -> AudioFrame | None:
        """Gather capture frames into openWakeWord's 80 ms step: one inference (one thread hop) per step."""
        if (
            not self._wake_block
            or frame.sample != self._wake_block_start + len(self._wake_block) // 2
            or (frame.linear is None) != (self._wake_linear is None)
        ):
            # first frame, or a gap (the detector was not fed meanwhile), or echo cancellation came or went
            self._wake_block = bytearray()
            self._wake_linear = None if frame.linear is None else bytearray()
            self._wake_block_start = frame.sample
        self._wake_block += frame.pcm
        if self._wake_linear is not None and frame.linear is not None:
            self._wake_linear += frame.linear
        size = WAKE_STEP_SAMPLES * 2
        if len(self._wake_block) < size:
            return None
        linear = None
        if self._wake_linear is not None:
            linear = bytes(self._wake_linear[:size])
            del self._wake_linear[:size]
        block = AudioFrame(bytes(self._wake_block[:size]), self._wake_block_start, linear)
        del self._wake_block[:size]
        self._wake_block_start += WAKE_STEP_SAMPLES
        return block

    async def _finish_after_input_end(self) -> None:
        """The WAV ended: the room goes quiet. Finish what is in progress (answer, announcements), then return."""
        sample = self._last_sample
        pace = self.settings.audio.realtime_pace and self.settings.audio.input.startswith("wav:")
        limit = deadlines_for(self.settings)
        bound = asyncio.get_running_loop().time() + limit.listening_s + limit.processing_s + limit.responding_s
        while (self.sm.active or self.busy) and asyncio.get_running_loop().time() < bound:
            if self.sm.state is State.LISTENING:
                await self.on_frame(AudioFrame(SILENCE, sample))
                sample += FRAME_SAMPLES
                await asyncio.sleep(FRAME_SAMPLES / INPUT_RATE_HZ if pace else 0)
            else:
                await asyncio.sleep(0.02)

    # --- what the listening parts report ---------------------------------------------------------------

    async def _on_wake(self, det: WakeDetected) -> None:
        self.bus.publish(WakeDetected(det.model, round(det.score, 3), det.sample, state=str(self.sm.state)))
        if self.parts.arbiter is not None and self.sm.state is State.IDLE and self._turn is None:
            self._claim(det, self.parts.arbiter)
            return
        if self._turn is not None or self.sm.state is State.PROCESSING:
            await self._interrupt("barge-in")
        self._begin_listening(f"wake word {det.model}", det.sample + WAKE_STEP_SAMPLES, preroll=True)

    def _claim(self, det: WakeDetected, arbiter: Arbiter) -> None:
        """Several speakers heard it: claim it and wait the window; nothing plays, nothing is sent meanwhile."""
        if self.sm.handle(Trigger.CLAIM, f"wake word {det.model}") is None:
            return
        preroll = list(self._preroll)
        self._held = []
        tasks.spawn(self._arbitrate(det, arbiter, preroll), "hark-arbitration")

    async def _arbitrate(self, det: WakeDetected, arbiter: Arbiter, preroll: list[AudioFrame]) -> None:
        won, claims = await arbiter.contest(speech_level_dbfs(preroll), det.score)
        held, self._held = self._held, []
        if self.sm.state is not State.ARBITRATING:
            return  # stopped, muted or a listen command meanwhile
        self.bus.publish(
            ev.Arbitration(won, claims[0].device, tuple((c.device, c.level_dbfs, c.score) for c in claims))
        )
        if not won:
            self.sm.handle(Trigger.STAND_DOWN, f"{claims[0].device} answers")
            return
        self._preroll.clear()
        self._preroll.extend(preroll)
        if self._begin_listening(f"wake word {det.model}", det.sample + WAKE_STEP_SAMPLES, preroll=True):
            # what was said during the window, in order, before any newer frame: frames that arrive while an
            # end-of-turn judgement is awaited here join the queue rather than overtake it
            self._held, self._replaying = held, True
            try:
                while self._held and self._listening():
                    frame = self._held.pop(0)
                    self.parts.responder.append(frame.pcm)
                    for event in await self.parts.endpointer.process(frame, self._infer):
                        self._on_endpoint(event)
            finally:
                self._held, self._replaying = [], False

    def _listening(self) -> bool:
        """Read afresh (a judgement awaited meanwhile may have ended the request)."""
        return self.sm.state is State.LISTENING

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

    def _on_endpoint(self, event: TurnEvent) -> None:
        self.bus.publish(event)
        if isinstance(event, SpeechEnded):
            if self.sm.handle(Trigger.SPEECH_ENDED, "max length" if event.timed_out else "end of speech"):
                self._start("answer", self._answer(self.parts.responder.answer()))
        elif isinstance(event, NoSpeech):
            self.parts.responder.discard()
            self.sm.handle(Trigger.NO_SPEECH)

    async def _device_lost(self, detail: str) -> None:
        if self.sm.active:
            await self._interrupt("microphone lost", keep_announcement=True)
        self.sm.handle(Trigger.DEVICE_LOST, detail)

    # --- the turn ----------------------------------------------------------------------------------------

    def _start(self, kind: str, work: Coroutine[Any, Any, Outcome]) -> None:
        assert kind in ("answer", "announcement")
        task = asyncio.create_task(work, name=f"hark-{kind}")
        turn = Turn("answer" if kind == "answer" else "announcement", task)
        self._turn = turn
        task.add_done_callback(lambda _t: self._ended(turn))

    def _ended(self, turn: Turn) -> None:
        """A turn's task finished. If it is still the current turn, apply its outcome (the one place)."""
        if self._turn is not turn:
            return  # detached by an interrupt: the interrupter decided what comes next
        self._turn = None
        outcome = self._outcome_of(turn)
        state = self.sm.state
        if outcome is Outcome.FOLLOWUP and state is State.RESPONDING:
            self._begin_followup()
        elif outcome is Outcome.FAILED:
            if turn.kind == "answer":
                self._play_chime("error")
            if state in ACTIVE:
                self.sm.handle(Trigger.FAILED, f"{turn.kind} failed")
        elif state in (State.PROCESSING, State.RESPONDING):
            self.sm.handle(Trigger.ANSWER_DONE, f"{turn.kind} done")
        self._pump()

    def _outcome_of(self, turn: Turn) -> Outcome:
        if turn.task.cancelled():
            return Outcome.FAILED  # cancelled without being detached: only at shutdown
        error = turn.task.exception()
        if error is None:
            return turn.task.result()
        log.error("%s failed: %s: %s", turn.kind, type(error).__name__, error, exc_info=error)
        self.bus.publish(ev.Error(f"{turn.kind}_failed", f"the {turn.kind} failed: {type(error).__name__}: {error}"))
        self.parts.sink.stop()
        return Outcome.FAILED

    async def _answer(self, chunks: AsyncGenerator[AudioChunk, None]) -> Outcome:
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
        finally:
            await chunks.aclose()
        if not started:
            log.warning("the turn ended with nothing to say")
            return Outcome.FAILED
        return Outcome.FOLLOWUP if self.settings.conversation.followup_seconds > 0 else Outcome.DONE

    async def _announce(self, item: PendingAnnouncement) -> Outcome:
        voice = self.parts.voice
        assert voice is not None
        sink = self.parts.sink
        sink.begin()
        try:
            async for chunk in voice.speak(item.text):
                sink.write(chunk)
        except Exception as e:  # whatever the synthesizer raises: this announcement ends, the next one plays
            sink.stop()
            shown = _shown(item.text)
            log.error("announcement %s not spoken: %s: %s", shown, type(e).__name__, e)
            self.bus.publish(ev.Error("announcement_failed", f"announcement {shown} not spoken: {e}"))
            return Outcome.FAILED
        await sink.drain()
        return Outcome.DONE

    def _pump(self) -> None:
        """Start the next queued announcement if nothing else is going on."""
        while self._turn is None and not self._stopping and self.sm.state in QUIET:
            item = self._queue.pop()
            if item is None:
                return
            if self.parts.voice is None:
                message = f"announcement {_shown(item.text)} not spoken: no local voice (run scripts/fetch-models)"
                log.error("%s", message)
                self.bus.publish(ev.Error("no_voice", message))
                continue
            self.bus.publish(ev.Announcement(item.text, item.priority))
            self.sm.handle(Trigger.ANNOUNCE, "announcement")
            self._start("announcement", self._announce(item))

    def _begin_followup(self) -> None:
        if self.sm.handle(Trigger.FOLLOWUP, "follow-up window") is None:
            return
        self.parts.endpointer.start(self._last_sample, start_timeout_s=self.settings.conversation.followup_seconds)
        self.parts.responder.prepare()

    async def _interrupt(self, reason: str, keep_announcement: bool = False) -> int:
        """Silence the current turn now, cancel it, tell the responder how much of an answer was heard.
        `keep_announcement`: an announcement goes on (mute, a lost microphone: the speaker still works)."""
        turn = self._turn
        if turn is not None and turn.kind == "announcement" and keep_announcement:
            turn = None
        else:
            self._turn = None  # detached first: a turn woken by the stop must not carry on
        played = int(self.parts.sink.stop()) if turn is not None else 0
        if turn is not None:
            await cancel_task(turn.task)
        self.parts.endpointer.stop()
        if turn is None or turn.kind == "answer":
            await self.parts.responder.interrupt(played)
        if turn is not None:
            self.bus.publish(ev.Interrupted(reason, played))
        return played

    # --- commands (daemon.core.controller): one at a time, in order ---------------------------------------

    def command(self, work: Callable[[], Awaitable[None]]) -> None:
        """Queue a command; commands run one after another on the loop, never interleaved."""
        self._commands.put_nowait(work)
        self._start_commands()

    def _start_commands(self) -> None:
        if self._command_task is None or self._command_task.done():
            self._command_task = tasks.spawn(self._run_commands(), "hark-commands")

    async def _run_commands(self) -> None:
        while True:
            work = await self._commands.get()
            try:
                await work()
            except Exception as e:  # one bad command must not stop the ones after it
                log.exception("command failed: %s", e)
                self.bus.publish(ev.Error("command_failed", f"a command failed: {type(e).__name__}: {e}"))

    async def listen(self, reason: str) -> None:
        if self._turn is not None or self.sm.state is State.PROCESSING:
            await self._interrupt(reason)
        if not self._begin_listening(reason, self._last_sample, preroll=False) and self.sm.state is not State.LISTENING:
            self._refuse("listen", f"cannot listen while {self.sm.state}")

    async def stop(self, reason: str) -> None:
        """Stop everything: the answer or announcement playing and every queued announcement."""
        dropped = self._queue.clear()
        if dropped:
            log.info("stop: %d queued announcement(s) dropped", dropped)
        if self._turn is not None or self.sm.active:
            await self._interrupt(reason)
            self.parts.responder.discard()
        self.sm.handle(Trigger.STOP, reason)

    async def ask(self, text: str) -> None:
        if self.sm.state in (State.MUTED, State.ERROR):
            why = "the speaker is muted (unmute first)" if self.sm.state is State.MUTED else "the microphone is gone"
            self._refuse("ask", f"question not asked: {why}")
            return
        if self._turn is not None or self.sm.active:
            await self._interrupt("new question")
            self.sm.handle(Trigger.STOP, "new question")
        if self.sm.handle(Trigger.ASK, "ask command"):
            self._start("answer", self._answer(self.parts.responder.ask(text)))

    async def say(self, text: str, priority: bool) -> None:
        dropped = self._queue.push(PendingAnnouncement(text, priority))
        if dropped is False:
            size = self.settings.announcements.queue_size
            self._refuse(
                "say", f"announcement {_shown(text)} dropped: {size} already waiting (announcements.queue_size)"
            )
            return
        if dropped is not None:
            log.warning("announcement %s dropped to make room for a priority one", _shown(dropped.text))
        if priority and self._turn is not None:  # pre-empts whatever plays, muted or not
            await self._interrupt("priority announcement")
        if priority and self.sm.active:
            self.sm.handle(Trigger.STOP, "priority announcement")
        self._pump()

    async def set_mute(self, on: bool) -> None:
        self.parts.choices.update(muted=on)
        self.bus.publish(ev.MuteChanged(on))
        if on:
            if self.sm.active:
                await self._interrupt("muted", keep_announcement=True)
            self.sm.handle(Trigger.MUTE, "mute command")
        else:
            self.sm.handle(Trigger.UNMUTE, "unmute command")
        self._pump()

    def set_volume(self, percent: int) -> None:
        self.parts.sink.volume = percent
        self.parts.choices.update(volume=percent)
        self.bus.publish(ev.VolumeChanged(percent))

    def set_wake(self, on: bool) -> None:
        if self.sm.set_wake_enabled(on) and on:
            self._reset_wake()
        self.parts.choices.update(wake_enabled=on)
        self.bus.publish(ev.WakeEnabledChanged(on))

    def _refuse(self, command: str, message: str) -> None:
        log.warning("%s: %s", command, message)
        self.bus.publish(ev.Error("command_refused", f"cmd/{command}: {message}"))

    # --- shutdown ------------------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """SIGTERM: silence now, end the turn, leave the state idle (its last retained value), close."""
        self._stopping = True
        self._queue.clear()
        try:
            if self._turn is not None or self.sm.active:
                await self._interrupt("shutdown")
            if self.sm.state is not State.MUTED:
                self.sm.handle(Trigger.STOP, "shutdown")
        except Exception:
            log.exception("silencing the speaker at shutdown failed; closing anyway")
        await cancel_task(self._command_task)
        try:
            await self.parts.responder.aclose()
        finally:
            self._infer.shutdown(wait=False, cancel_futures=True)

    # --- the one listener of state changes ------------------------------------------------------------------

    def _on_change(self, change: Transition) -> None:
        self.bus.publish(ev.StateChanged(str(change.before), str(change.after), str(change.trigger), change.reason))
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
            asyncio.get_running_loop().call_soon(self._pump)
        if change.before in (State.ARBITRATING, State.LISTENING, State.MUTED, State.ERROR):
            self._reset_wake()  # detection resumes after a gap: its buffer still holds the old audio

    def _on_timeout(self) -> None:
        state = self.sm.state
        if state not in ACTIVE:
            return
        log.warning("%s took too long: back to idle", state)
        tasks.spawn(self._timeout_turn(state), "hark-timeout")

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


def _shown(text: str) -> str:
    return repr(text[:SHOWN_CHARS]) + ("…" if len(text) > SHOWN_CHARS else "")


def _log_failure(future: Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("wake detector reset failed: %s", future.exception())
