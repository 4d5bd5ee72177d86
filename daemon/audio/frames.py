"""The audio that flows one way through the pipeline, and the constants every part agrees on.

Audio moves as `AudioFrame` (capture side, always 16 kHz mono PCM16, stamped with its sample offset in the
input stream) and `AudioChunk` (playback side, any rate: Realtime, Piper and chimes reach the speaker alike).
"""

from __future__ import annotations

from dataclasses import dataclass

INPUT_RATE_HZ = 16_000
"""Every capture frame is converted to this rate before anything else sees it."""
FRAME_SAMPLES = 480
"""30 ms at 16 kHz: exactly one webrtcvad frame, so the end-of-speech decision is made the moment the audio
that completes it arrives (an 80 ms frame would add up to 80 ms to every decision)."""
WAKE_STEP_SAMPLES = 1280
"""80 ms: openWakeWord's native step; the assistant hands the detector blocks of exactly this size."""
SAMPLE_WIDTH = 2


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One capture frame: 16 kHz mono PCM16 little-endian, `sample` = offset of its first sample.

    `linear` is the same audio through the linear echo canceller only, when echo is being cancelled: the
    echo less deeply removed but the user's voice intact over an answer (see daemon.audio.echo)."""

    pcm: bytes
    sample: int
    linear: bytes | None = None

    @property
    def samples(self) -> int:
        return len(self.pcm) // SAMPLE_WIDTH

    @property
    def end_sample(self) -> int:
        return self.sample + self.samples


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Audio on its way to the speaker: PCM16 little-endian at any rate (Realtime, Piper, chimes alike)."""

    pcm: bytes
    rate_hz: int
    channels: int = 1

    @property
    def duration_ms(self) -> float:
        return len(self.pcm) / (SAMPLE_WIDTH * self.channels) * 1000.0 / self.rate_hz


# --- what the capture source reports besides frames -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceLost:
    """The capture device failed or vanished; the source keeps trying to reopen it."""

    detail: str


@dataclass(frozen=True, slots=True)
class DeviceRestored:
    """The capture device is back; frames flow again."""

    detail: str


SourceItem = AudioFrame | DeviceLost | DeviceRestored
