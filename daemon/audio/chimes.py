"""Feedback chimes (wake, done, error): generated in code, replaced by a WAV, or switched off.

The built-in chimes are soft bell-like tones (a sine with a quiet octave, a fast attack and an exponential
decay) well below full scale, so they never startle and never clip after the software volume.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from daemon.audio.frames import AudioChunk
from daemon.audio.resample import AudioFileError, read_wav_mono16
from daemon.config.settings import ChimeSettings

CHIME_RATE_HZ = 24_000
CHIME_NAMES = ("wake", "done", "error")
PEAK = 0.35
"""Peak level of the built-in chimes relative to full scale."""

_NOTES: dict[str, tuple[tuple[float, float], ...]] = {
    # (frequency Hz, duration s): rising = "I'm listening", falling = "done", low repeat = "something failed"
    "wake": ((659.25, 0.09), (987.77, 0.16)),
    "done": ((987.77, 0.09), (659.25, 0.16)),
    "error": ((311.13, 0.12), (0.0, 0.05), (311.13, 0.18)),
}


def _note(freq_hz: float, duration_s: float) -> np.ndarray:
    n = int(CHIME_RATE_HZ * duration_s)
    t = np.arange(n) / CHIME_RATE_HZ
    if freq_hz <= 0:
        return np.zeros(n)
    tone = np.sin(2 * np.pi * freq_hz * t) + 0.25 * np.sin(4 * np.pi * freq_hz * t)
    envelope = np.exp(-t / (duration_s * 0.45))
    attack = min(n, int(CHIME_RATE_HZ * 0.005))  # 5 ms: no click at the onset
    envelope[:attack] *= np.linspace(0.0, 1.0, attack)
    release = min(n, int(CHIME_RATE_HZ * 0.010))  # 10 ms: no click at the end
    envelope[n - release :] *= np.linspace(1.0, 0.0, release)
    return np.asarray(tone * envelope)


def builtin_chime(name: str) -> AudioChunk:
    """The generated chime `name` (wake, done or error) as 24 kHz mono PCM16."""
    if name not in _NOTES:
        raise ValueError(f"unknown chime {name!r}; expected one of {', '.join(CHIME_NAMES)}")
    wave_ = np.concatenate([_note(f, d) for f, d in _NOTES[name]])
    wave_ *= PEAK / max(1e-9, float(np.max(np.abs(wave_))))
    return AudioChunk((wave_ * 32767).astype("<i2").tobytes(), CHIME_RATE_HZ)


def load_chimes(settings: ChimeSettings) -> dict[str, AudioChunk | None]:
    """{"wake", "done", "error"} → the chime to play, or None when it is switched off ("").

    A WAV path is loaded now, so a missing file is reported at start, not at the first wake word.
    """
    specs = {"wake": settings.wake, "done": settings.done, "error": settings.error}
    out: dict[str, AudioChunk | None] = {}
    for name, raw in specs.items():
        spec = raw.strip()
        if spec == "":
            out[name] = None
        elif spec == "builtin":
            out[name] = builtin_chime(name)
        else:
            try:
                pcm, rate = read_wav_mono16(Path(spec).expanduser(), None)
            except AudioFileError as e:
                msg = f'chimes.{name} = "{spec}": {e}; use "builtin", "" (off) or a WAV'
                raise AudioFileError(msg) from e
            if not pcm:
                raise AudioFileError(f'chimes.{name} = "{spec}": the WAV holds no audio')
            out[name] = AudioChunk(pcm, rate)
    return out
