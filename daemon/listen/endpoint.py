"""webrtcvad endpointing: after the wake word, find where the user starts and stops speaking.

A plain synchronous state machine over frames (the shape of Pipecat's VADAnalyzer: QUIET → STARTING →
SPEAKING → STOPPING), with no I/O and no clock: time is counted in input samples, so a WAV fed at full speed
gives exactly the events a live microphone would. webrtcvad only takes 10/20/30 ms frames, so the 80 ms
capture frames are cut into 30 ms sub-frames and the remainder is carried into the next frame.
"""

from __future__ import annotations

import logging
from enum import Enum

import webrtcvad

from daemon.audio.frames import INPUT_RATE_HZ, SAMPLE_WIDTH, AudioFrame
from daemon.config.settings import EndpointSettings
from daemon.observe.events import NoSpeech, SpeechEnded, SpeechStarted

log = logging.getLogger(__name__)

VAD_FRAME_MS = 30
VAD_FRAME_SAMPLES = INPUT_RATE_HZ * VAD_FRAME_MS // 1000
_VAD_FRAME_BYTES = VAD_FRAME_SAMPLES * SAMPLE_WIDTH

EndpointEvent = SpeechStarted | SpeechEnded | NoSpeech

# webrtcvad keeps saying "speech" for a fixed number of frames after the voice stops (vad_core.c
# kOverHangMax1*/kOverHangMax2* for 30 ms frames: the short hangover after <= 6 voiced frames, the long one
# after more). Subtracting it makes SpeechEnded mark where the silence really began, and adding the short one
# to speech_start_ms keeps a click (1 voiced frame + hangover) from counting as speech.
_HANGOVER_FRAMES = {0: (3, 5), 1: (3, 5), 2: (2, 3), 3: (2, 3)}
_LONG_RUN_FRAMES = 6


class VadState(str, Enum):
    IDLE = "idle"
    """Disarmed: frames are ignored until start()."""
    QUIET = "quiet"
    """Armed, waiting for the first voiced audio (start-of-speech timeout runs)."""
    STARTING = "starting"
    """Voiced audio seen, but not yet speech_start_ms of it in a row."""
    SPEAKING = "speaking"
    STOPPING = "stopping"
    """Silence after speech, not yet end_silence_ms of it."""


def _samples(ms: float) -> int:
    return round(ms * INPUT_RATE_HZ / 1000)


class Endpointer:
    """`start(sample)` at the wake point, then `process(frame)` for every frame until an ending event."""

    def __init__(self, settings: EndpointSettings, end_silence_ms: int | None = None) -> None:
        """`end_silence_ms` replaces settings.end_silence_ms (the turn detector passes its ceiling)."""
        self._hangover = _HANGOVER_FRAMES[settings.aggressiveness]
        self._vad = webrtcvad.Vad(settings.aggressiveness)
        self._voiced_run = 0  # consecutive sub-frames webrtcvad called voiced (hangover included)
        # A voiced run always carries the short hangover, so a click must not count it as speech.
        self._start_samples = _samples(settings.speech_start_ms) + self._hangover[0] * VAD_FRAME_SAMPLES
        # Silence is counted in whole 30 ms VAD frames: round end_silence_ms to the nearest frame (700 → 690)
        # rather than always up (700 → 720), so the decision lands as close as it can to the setting.
        end_ms = settings.end_silence_ms if end_silence_ms is None else end_silence_ms
        self._end_samples = max(1, round(_samples(end_ms) / VAD_FRAME_SAMPLES)) * VAD_FRAME_SAMPLES
        self._default_timeout = _samples(settings.start_timeout_s * 1000)
        self._timeout_samples = self._default_timeout
        self._max_samples = _samples(settings.max_utterance_s * 1000)
        self._state = VadState.IDLE
        self._buf = b""
        self._next = 0  # input sample of self._buf[0] (or of the next audio to arrive)
        self._armed_at = 0
        self._run_start = 0  # first sample of the current voiced (STARTING) or unvoiced (STOPPING) run
        self._speech_start = 0
        self._fed = False  # any audio received since start()

    @property
    def state(self) -> VadState:
        return self._state

    @property
    def armed(self) -> bool:
        return self._state is not VadState.IDLE

    @property
    def silence_start(self) -> int | None:
        """While STOPPING: the input sample where the voice stopped (hangover removed); otherwise None."""
        return self._run_start if self._state is VadState.STOPPING else None

    @property
    def heard_until(self) -> int:
        """The input sample up to which webrtcvad has judged the audio (the end of the last 30 ms sub-frame)."""
        return self._next

    def start(self, sample: int, start_timeout_s: float | None = None) -> None:
        """Arm at input sample `sample` (audio before it is ignored); re-arming restarts from scratch.

        `start_timeout_s` replaces endpoint.start_timeout_s for this utterance (the follow-up window)."""
        if sample < 0:
            raise ValueError(f"start sample must be >= 0, got {sample}")
        self._state = VadState.QUIET
        self._buf = b""
        self._next = self._armed_at = sample
        self._fed = False
        self._timeout_samples = self._default_timeout if start_timeout_s is None else _samples(start_timeout_s * 1000)

    def stop(self) -> None:
        """Disarm without an event (barge-in, mute, shutdown)."""
        self._state = VadState.IDLE
        self._buf = b""

    def process(self, frame: AudioFrame) -> list[EndpointEvent]:
        """Feed one capture frame; returns the events it completed (usually none)."""
        buf_end = self._next + len(self._buf) // SAMPLE_WIDTH
        if self._state is VadState.IDLE or frame.end_sample <= buf_end:
            return []
        if frame.sample > buf_end:
            # The first frame after start() may begin later (the wake frame was already consumed); a later
            # gap means lost input (device lost): drop the partial sub-frame and restart the grid here.
            if self._fed:
                log.warning("endpointer: input jumped from sample %d to %d", buf_end, frame.sample)
            self._buf, self._next, buf_end = b"", frame.sample, frame.sample
        self._buf += frame.pcm[(buf_end - frame.sample) * SAMPLE_WIDTH :]
        self._fed = True
        events: list[EndpointEvent] = []
        while len(self._buf) >= _VAD_FRAME_BYTES and self.armed:
            chunk, self._buf = self._buf[:_VAD_FRAME_BYTES], self._buf[_VAD_FRAME_BYTES:]
            voiced = self._vad.is_speech(chunk, INPUT_RATE_HZ)
            event = self._step(voiced, self._next)
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            self._next += VAD_FRAME_SAMPLES
            if event is not None:
                events.append(event)
        return events

    def _step(self, voiced: bool, at: int) -> EndpointEvent | None:
        """Advance by one 30 ms sub-frame starting at input sample `at`."""
        end = at + VAD_FRAME_SAMPLES
        state = self._state
        if state in (VadState.QUIET, VadState.STARTING):
            if not voiced:
                self._state = VadState.QUIET
            elif state is VadState.QUIET:
                self._state, self._run_start = VadState.STARTING, at
            if self._state is VadState.STARTING and end - self._run_start >= self._start_samples:
                self._state, self._speech_start = VadState.SPEAKING, self._run_start
                return SpeechStarted(self._run_start)
            if end - self._armed_at >= self._timeout_samples:
                return self._finish(NoSpeech(end))
            return None
        if end - self._speech_start >= self._max_samples:
            return self._finish(SpeechEnded(end, timed_out=True, reason="max_length", decided_sample=end))
        if voiced:
            self._state = VadState.SPEAKING
        elif state is VadState.SPEAKING:
            self._state = VadState.STOPPING
            self._run_start = max(self._speech_start, at - self._hangover_samples())
        if self._state is VadState.STOPPING and end - self._run_start >= self._end_samples:
            return self._finish(SpeechEnded(self._run_start, reason="silence", decided_sample=end))
        return None

    def _hangover_samples(self) -> int:
        """How far back the silence began: the reported voiced run = true voiced frames + hangover."""
        short, long = self._hangover
        frames = long if self._voiced_run - long > _LONG_RUN_FRAMES else short
        return frames * VAD_FRAME_SAMPLES

    def _finish(self, event: EndpointEvent) -> EndpointEvent:
        self._state = VadState.IDLE
        self._buf = b""
        log.debug("endpointer: %s", event)
        return event
