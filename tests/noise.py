"""Room sounds for the wake gate's tests and benchmark: pink noise, a fan/fridge hum, a distant TV, mixing."""

from __future__ import annotations

import numpy as np

from daemon.audio.frames import INPUT_RATE_HZ


def dbfs(pcm: np.ndarray) -> float:
    """RMS level of int16 audio in dBFS (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0
    return 20 * np.log10(rms / 32768.0) if rms > 0 else float("-inf")


def _at_level(x: np.ndarray, level_dbfs: float) -> np.ndarray:
    x = x / np.sqrt(np.mean(x**2)) * 32768.0 * 10 ** (level_dbfs / 20)
    return np.asarray(np.clip(x, -32768, 32767).astype(np.int16))


def pink_noise(seconds: float, level_dbfs: float, seed: int = 0) -> np.ndarray:
    """1/f noise (a room's air, a distant road) at an RMS level, shaped in the frequency domain."""
    n = round(seconds * INPUT_RATE_HZ)
    spectrum = np.fft.rfft(np.random.default_rng(seed).normal(size=n))
    freqs = np.fft.rfftfreq(n, 1 / INPUT_RATE_HZ)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    return _at_level(np.fft.irfft(spectrum, n), level_dbfs)


def hum(seconds: float, level_dbfs: float, base_hz: float = 100.0, seed: int = 0) -> np.ndarray:
    """A fridge compressor or fan: a mains-related tone with a few harmonics and a slow wobble, plus a whisper
    of broadband air."""
    t = np.arange(round(seconds * INPUT_RATE_HZ)) / INPUT_RATE_HZ
    wobble = 1 + 0.1 * np.sin(2 * np.pi * 0.3 * t)
    tone = sum(np.sin(2 * np.pi * base_hz * k * t) / k for k in (1, 2, 3, 5))
    air = np.random.default_rng(seed).normal(size=len(t)) * 0.05
    return _at_level(tone * wobble + air, level_dbfs)


def mix(*tracks: np.ndarray) -> np.ndarray:
    """Sum int16 tracks (the shortest sets the length), clipped."""
    n = min(len(t) for t in tracks)
    total = sum(t[:n].astype(np.int32) for t in tracks)
    return np.asarray(np.clip(total, -32768, 32767).astype(np.int16))


def with_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float, speech_level_dbfs: float) -> np.ndarray:
    """`noise` rescaled to `snr_db` below the speech's level (measured where it is speech) and added."""
    return mix(speech, _at_level(noise.astype(np.float64), speech_level_dbfs - snr_db))


def voiced_level_dbfs(pcm: np.ndarray, frame: int = 480) -> float:
    """Level of the louder half of 30 ms frames: the speech level of a clip with pauses in it."""
    frames = pcm[: len(pcm) // frame * frame].reshape(-1, frame).astype(np.float64)
    power = np.sort(np.mean(frames**2, axis=1))[len(frames) // 2 :]
    return float(10 * np.log10(np.mean(power) / 32768.0**2))


def at_voiced_level(pcm: np.ndarray, level_dbfs: float) -> np.ndarray:
    """Speech rescaled so its voiced frames sit at `level_dbfs` (a quieter or farther talker)."""
    gain = 10 ** ((level_dbfs - voiced_level_dbfs(pcm)) / 20)
    return np.asarray(np.clip(pcm.astype(np.float64) * gain, -32768, 32767).astype(np.int16))
