"""Real speech for tests: espeak-ng and the Piper voice, 16 kHz mono int16, with the true speech offsets.

Why generated, not shipped: the repository stays small and every test can say exactly what it needs
("hey jarvis, 1.5 s of silence, then a question"). `concat` trims each part to where its waveform is
audible, so the offsets it returns are the ground truth the endpointer and wake tests are checked against.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import wave
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from daemon.audio.frames import INPUT_RATE_HZ, WAKE_STEP_SAMPLES, AudioFrame

AUDIBLE = 0.01
"""A sample counts as speech when it reaches 1 % of the part's peak (−40 dB): quieter tails are inaudible."""


@dataclass(frozen=True)
class Span:
    """Where one part's speech lies in the concatenated audio, in samples (end exclusive)."""

    start: int
    end: int


@dataclass(frozen=True)
class Clip:
    """Concatenated test audio and the true speech span of each part."""

    pcm: np.ndarray
    spans: tuple[Span, ...]

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / INPUT_RATE_HZ

    def frames(self, size: int = WAKE_STEP_SAMPLES, start: int = 0) -> Iterator[AudioFrame]:
        """Capture-style frames with sample offsets (a short last frame is zero-padded, like a device)."""
        for at in range(start, len(self.pcm), size):
            chunk = self.pcm[at : at + size]
            if len(chunk) < size:
                chunk = np.concatenate([chunk, np.zeros(size - len(chunk), dtype=np.int16)])
            yield AudioFrame(chunk.tobytes(), at)

    def write(self, path: Path) -> Path:
        write_wav(path, self.pcm)
        return path


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono int16 samples and the rate (multi-channel files are mixed down)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        channels, rate = w.getnchannels(), w.getframerate()
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return data, rate


def write_wav(path: Path, pcm: np.ndarray, rate: int = INPUT_RATE_HZ) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(pcm, dtype=np.int16).tobytes())


def to_16k(pcm: np.ndarray, rate: int) -> np.ndarray:
    """soxr, no dither: "silence" stays digital silence."""
    if rate == INPUT_RATE_HZ:
        return pcm
    out = soxr.resample(pcm.astype(np.float32) / 32768.0, rate, INPUT_RATE_HZ, quality="HQ")
    return np.clip(np.round(out * 32768.0), -32768, 32767).astype(np.int16)


def speech_bounds(pcm: np.ndarray) -> tuple[int, int]:
    """First and one-past-last audible sample of a clip."""
    mag = np.abs(pcm.astype(np.int32))
    loud = np.flatnonzero(mag >= max(1, int(mag.max() * AUDIBLE)))
    if len(loud) == 0:
        raise ValueError("clip is silent: no speech to place")
    return int(loud[0]), int(loud[-1]) + 1


def _cache_name(*key: Any) -> str:
    return hashlib.sha1(repr(key).encode()).hexdigest()[:16] + ".wav"


def espeak_wav(text: str, cache_dir: Path, voice: str = "en-us", speed: int = 160, pitch: int = 50) -> Path:
    """espeak-ng's rendering of `text` as a 16 kHz WAV (cached by text and voice settings)."""
    path = cache_dir / _cache_name("espeak", text, voice, speed, pitch)
    if path.exists():
        return path
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        pcm, rate = read_wav(raw)
    _write_atomic(path, to_16k(pcm, rate))
    return path


class PiperSpeaker:
    """The real Piper voice, loaded once (≈1 s) and reused for every utterance of the session."""

    def __init__(self, voice_path: Path, cache_dir: Path) -> None:
        self._voice_path = voice_path
        self._cache_dir = cache_dir
        self._voice: Any = None

    def wav(
        self,
        text: str,
        length_scale: float = 1.0,
        volume: float = 0.8,
        noise_scale: float | None = 0.0,
        noise_w_scale: float | None = 0.0,
    ) -> Path:
        """Piper's rendering of `text` (all sentences) as a 16 kHz WAV, cached.

        Piper samples noise inside the model, so every rendering differs (enough to move a wake score from
        1.0 to 0.0). Both noise scales default to 0 so a test hears the same audio every run; pass None
        for the voice's own, varying prosody.
        """
        key = (text, length_scale, volume, noise_scale, noise_w_scale)
        path = self._cache_dir / _cache_name("piper", self._voice_path.name, *key)
        if path.exists():
            return path
        from piper import PiperVoice, SynthesisConfig

        if self._voice is None:
            self._voice = PiperVoice.load(self._voice_path)
        config = SynthesisConfig(
            length_scale=length_scale, volume=volume, noise_scale=noise_scale, noise_w_scale=noise_w_scale
        )
        chunks = list(self._voice.synthesize(text, syn_config=config))
        if not chunks:
            raise ValueError(f"Piper produced no audio for {text!r}")
        pcm = np.concatenate([np.frombuffer(c.audio_int16_bytes, dtype=np.int16) for c in chunks])
        _write_atomic(path, to_16k(pcm, chunks[0].sample_rate))
        return path


_speakers: dict[tuple[Path, Path], PiperSpeaker] = {}


def piper_wav(text: str, models_dir: Path, cache_dir: Path, **kwargs: Any) -> Path:
    """The en_US-joe-medium voice's rendering of `text` as a 16 kHz WAV (voice loaded once per process)."""
    voice = models_dir / "piper" / "en_US-joe-medium.onnx"
    speaker = _speakers.setdefault((voice, cache_dir), PiperSpeaker(voice, cache_dir))
    return speaker.wav(text, **kwargs)


def _write_atomic(path: Path, pcm: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write_wav(tmp, pcm)
    tmp.replace(path)


def concat(
    parts: Sequence[Path | np.ndarray],
    silences: Sequence[float],
    noise_dbfs: float | None = -70.0,
    seed: int = 0,
) -> Clip:
    """Parts trimmed to their audible speech, with `silences` seconds before, between and after them.

    `silences` has one more entry than `parts` (leading, each gap, trailing). `noise_dbfs` adds a faint,
    seeded white-noise floor over everything, like a quiet room (None = digital silence).
    """
    if len(silences) != len(parts) + 1:
        raise ValueError(
            f"concat: {len(parts)} parts need {len(parts) + 1} silences (before, between, after), got {len(silences)}"
        )
    if any(s < 0 for s in silences):
        raise ValueError(f"concat: silences must be >= 0 seconds, got {list(silences)}")
    pieces: list[np.ndarray] = []
    spans: list[Span] = []
    at = 0
    for part, silence in zip(parts, silences[:-1], strict=True):
        pcm = read_wav(part)[0] if isinstance(part, Path) else np.asarray(part, dtype=np.int16)
        first, last = speech_bounds(pcm)
        gap = np.zeros(round(silence * INPUT_RATE_HZ), dtype=np.int16)
        pieces += [gap, pcm[first:last]]
        spans.append(Span(at + len(gap), at + len(gap) + last - first))
        at = spans[-1].end
    pieces.append(np.zeros(round(silences[-1] * INPUT_RATE_HZ), dtype=np.int16))
    audio = np.concatenate(pieces)
    if noise_dbfs is not None:
        noise = np.random.default_rng(seed).normal(0.0, 32768.0 * 10 ** (noise_dbfs / 20), len(audio))
        audio = np.clip(audio.astype(np.float64) + noise, -32768, 32767).astype(np.int16)
    return Clip(audio, tuple(spans))


class Speech:
    """The `speech` fixture: session-cached generators bound to one cache dir and the models dir."""

    def __init__(self, cache_dir: Path, models_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.models_dir = models_dir

    def espeak(self, text: str, **kwargs: Any) -> Path:
        return espeak_wav(text, self.cache_dir, **kwargs)

    def piper(self, text: str, **kwargs: Any) -> Path:
        return piper_wav(text, self.models_dir, self.cache_dir, **kwargs)

    concat = staticmethod(concat)

    def wav(self, clip: Clip, name: str) -> Path:
        """Write a clip into the session cache (for wav: inputs and paplay)."""
        return clip.write(self.cache_dir / f"{name}.wav")

    def conversation_without_wake_word(self) -> Clip:
        """Two minutes of household talk, espeak-ng and Piper, with no wake word in it (the privacy tests)."""
        parts = [self.espeak(s) for s in OTHER_SPEECH] + [self.piper(s) for s in OTHER_SPEECH]
        return self.concat(parts * 5, [0.6] * (len(parts) * 5 + 1))


OTHER_SPEECH = (
    "Did you see the game last night",
    "I left the keys on the kitchen table",
    "We should call grandma this weekend",
    "The bus was late again this morning",
    "Can you believe how expensive coffee has become",
    "Let's have pasta for dinner",
)
"""Everyday sentences with no wake word in them."""
