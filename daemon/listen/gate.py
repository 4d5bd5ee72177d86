"""Voice-activity gate in front of the wake detector: a quiet room costs (almost) no inference.

openWakeWord runs three ONNX models (melspectrogram, embedding, wake) on every 80 ms block, and most of a
home's day is silence or steady noise. webrtcvad plus an energy floor costs microseconds per 30 ms frame, so
the gate listens with those and only hands blocks to the detector while there may be a voice.

Why the detections stay the same: a wake score at time t depends on the ~2 s of audio before t (16
embeddings of 80 ms, each over 76 mel frames). The gate keeps the last `gate_preroll_s` (≥ 1.5 s) of blocks;
when a voice starts it clears the detector's stale buffers (`WakeDetector.rewind`, refractory kept) and feeds
it that buffered audio first, then every block until `gate_hangover_s` of silence has passed. A wake phrase
starts after the voice onset, so by the time it ends the detector has seen the same audio it would have seen
ungated. Block positions (sample offsets) are untouched, so detections carry the same sample numbers.

Like the detector it wraps, `process()` runs on the single inference worker: one thread at a time.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from daemon.audio.frames import INPUT_RATE_HZ, SAMPLE_WIDTH, WAKE_STEP_SAMPLES, AudioFrame
from daemon.config.settings import WakeSettings
from daemon.listen.wake import WakeDetector
from daemon.observe.events import WakeDetected

log = logging.getLogger(__name__)

VAD_FRAME_SAMPLES = INPUT_RATE_HZ * 30 // 1000
_VAD_FRAME_BYTES = VAD_FRAME_SAMPLES * SAMPLE_WIDTH
VAD_MODE = 1
"""webrtcvad aggressiveness for the gate: permissive (a missed wake word is worse than a wasted inference);
the energy floor is what keeps steady room noise out."""
OPEN_WINDOW_FRAMES = 10
OPEN_VOICED_FRAMES = 3
"""The gate opens when 3 of the last 10 VAD frames (300 ms) are voiced and above the floor: a single click
or a voiced-looking noise frame does not open it. Opening late costs nothing: the buffered audio is fed."""


@dataclass
class GateCounters:
    """What the gate did, for benchmarks and tests: blocks seen, blocks the detector scored, openings."""

    blocks: int = 0
    scored: int = 0
    openings: int = 0


class WakeGate:
    """A `WakeDetector` that only runs while there may be a voice (`wake.gate = "vad"`): same interface."""

    def __init__(self, detector: WakeDetector, settings: WakeSettings) -> None:
        self._detector = detector
        self._vad = webrtcvad.Vad(VAD_MODE)
        # RMS floor in sample units, compared as a mean square (no sqrt per frame).
        self._floor_ms = (32768.0 * 10 ** (settings.gate_floor_dbfs / 20)) ** 2
        self._hangover_samples = round(settings.gate_hangover_s * INPUT_RATE_HZ)
        self._ring: deque[AudioFrame] = deque(
            maxlen=math.ceil(settings.gate_preroll_s * INPUT_RATE_HZ / WAKE_STEP_SAMPLES)
        )
        self._recent: deque[bool] = deque(maxlen=OPEN_WINDOW_FRAMES)
        self._carry = b""
        self._next_sample: int | None = None
        self._open = False
        self._scored_until: int | None = None  # end of the last block the detector scored
        self._since_voice = 0  # samples since the last block with a voiced frame (while open)
        self.counters = GateCounters()

    @property
    def names(self) -> list[str]:
        return self._detector.names

    @property
    def is_open(self) -> bool:
        return self._open

    def process(self, frame: AudioFrame, strict: bool = False, echo_cancelled: bool = False) -> list[WakeDetected]:
        """Take one 80 ms block; score it (and the buffered ones, on opening) only while a voice may be there."""
        self.counters.blocks += 1
        if self._next_sample is not None and frame.sample != self._next_sample:
            # A gap in the input: the buffered audio no longer leads up to this block.
            self._ring.clear()
            self._carry = b""
            self._recent.clear()
        self._next_sample = frame.end_sample
        self._ring.append(frame)
        if self._open:
            # Open, only the hangover needs the VAD: one 30 ms frame per block (the block's last) is enough
            # and keeps the gate's own cost under 2 % of the inference it lets through.
            voiced = self._voiced(frame.pcm[-_VAD_FRAME_BYTES:])
            self._since_voice = 0 if voiced else self._since_voice + frame.samples
            found = self._score([frame], strict, echo_cancelled)
            if self._since_voice >= self._hangover_samples:
                self._open = False
                self._carry = b""
                self._recent.clear()
                log.debug("wake gate closed at sample %d", frame.end_sample)
            return found
        self._voice_in(frame.pcm)
        if sum(self._recent) < OPEN_VOICED_FRAMES:
            return []
        self._open, self._since_voice = True, 0
        self.counters.openings += 1
        log.debug("wake gate opened at sample %d (%d buffered blocks)", frame.sample, len(self._ring))
        blocks = list(self._ring)
        self._detector.rewind(blocks[0].sample)
        # Blocks scored before this opening were judged then, with more context: only new ones may fire now.
        judged_until = -1 if self._scored_until is None else self._scored_until
        return [d for d in self._score(blocks, strict, echo_cancelled) if d.sample >= judged_until]

    def reset(self) -> None:
        """After a gap (listening, muted, device lost): forget buffered audio and close, like the detector."""
        self._detector.reset()
        self._ring.clear()
        self._recent.clear()
        self._carry = b""
        self._next_sample = None
        self._scored_until = None
        self._open = False

    def _score(self, blocks: list[AudioFrame], strict: bool, echo_cancelled: bool) -> list[WakeDetected]:
        self.counters.scored += len(blocks)
        self._scored_until = blocks[-1].end_sample
        return [d for block in blocks for d in self._detector.process(block, strict, echo_cancelled)]

    def _voiced(self, frame: bytes) -> bool:
        """One 30 ms frame: above the floor and voiced."""
        samples = np.frombuffer(frame, dtype=np.int16).astype(np.float32)
        return bool(np.dot(samples, samples) >= self._floor_ms * len(samples)) and self._vad.is_speech(
            frame, INPUT_RATE_HZ
        )

    def _voice_in(self, pcm: bytes) -> bool:
        """Run the 30 ms VAD frames this block completes; True if any was voiced and above the floor."""
        buf = self._carry + pcm
        whole = len(buf) // _VAD_FRAME_BYTES * _VAD_FRAME_BYTES
        self._carry = buf[whole:]
        if not whole:
            return False
        samples = np.frombuffer(buf[:whole], dtype=np.int16).astype(np.float32).reshape(-1, VAD_FRAME_SAMPLES)
        loud = np.mean(samples * samples, axis=1) >= self._floor_ms
        any_voiced = False
        for i, is_loud in enumerate(loud):
            voiced = bool(is_loud) and self._vad.is_speech(
                buf[i * _VAD_FRAME_BYTES : (i + 1) * _VAD_FRAME_BYTES], INPUT_RATE_HZ
            )
            self._recent.append(voiced)
            any_voiced |= voiced
        return any_voiced
