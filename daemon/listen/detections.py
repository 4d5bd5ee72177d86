"""What the listening parts detect: frozen dataclasses stamped with the input sample offset, so the trace
can line every decision up against the true audio."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WakeDetected:
    """A wake model crossed its threshold for `trigger_level` frames; `sample` = offset of that frame."""

    model: str
    score: float
    sample: int


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    sample: int


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """End of the utterance: `sample` is where trailing silence began; `timed_out` = max length reached."""

    sample: int
    timed_out: bool = False


@dataclass(frozen=True, slots=True)
class NoSpeech:
    """Nothing was said within the start-of-speech timeout."""

    sample: int
