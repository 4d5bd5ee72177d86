"""The linear echo canceller: it learns a fixed echo path, holds still when told to, keeps the near voice."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.audio.echo import BLOCK_SAMPLES
from daemon.audio.frames import INPUT_RATE_HZ
from daemon.audio.linear_echo import LinearEchoCanceller

RATE = INPUT_RATE_HZ


def _run(mic: np.ndarray, far: np.ndarray, learn_until: int) -> np.ndarray:
    lin = LinearEchoCanceller(RATE, BLOCK_SAMPLES)
    blocks = range(0, len(mic), BLOCK_SAMPLES)
    out = [lin.process(mic[i : i + BLOCK_SAMPLES], far[i : i + BLOCK_SAMPLES], i < learn_until) for i in blocks]
    return np.concatenate(out).astype(np.float64)


def _db(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(a.astype(np.float64) ** 2) / max(np.mean(b**2), 1e-9)))


@pytest.fixture(scope="module")
def room() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8 s of a noise reference, its echo 20 ms late at half level, and a voice over the last second."""
    rng = np.random.default_rng(1)
    far = (rng.standard_normal(RATE * 8) * 3000).astype(np.int16)
    echo = np.zeros(len(far))
    echo[320:] = far[:-320] / 2
    voice = np.zeros(len(far))
    voice[-RATE:] = np.sin(np.arange(RATE) * 0.05) * 4000
    return far, echo, voice


def test_it_learns_the_echo_and_holding_still_keeps_the_voice_over_it(
    room: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    far, echo, voice = room
    mic = np.clip(echo + voice, -32768, 32767).astype(np.int16)
    out = _run(mic, far, learn_until=len(far) - RATE)  # the caller stops learning when the voice starts
    learned = slice(5 * RATE, 7 * RATE)
    assert _db(mic[learned], out[learned]) > 20  # the echo: more than 20 dB down
    talk = slice(len(far) - RATE, None)
    assert _db(voice[talk], out[talk] - voice[talk]) > 15  # the voice comes through, the echo still cut


def test_learning_through_the_voice_would_have_damaged_it(room: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    """Why the caller holds learning while someone talks: the filter learns the voice as echo."""
    far, echo, voice = room
    mic = np.clip(echo + voice, -32768, 32767).astype(np.int16)
    held = _run(mic, far, learn_until=len(far) - RATE)
    kept_learning = _run(mic, far, learn_until=len(far))
    talk = slice(len(far) - RATE, None)
    assert _db(voice[talk], kept_learning[talk] - voice[talk]) < _db(voice[talk], held[talk] - voice[talk]) - 6


def test_blocks_of_the_wrong_size_are_refused_by_name() -> None:
    lin = LinearEchoCanceller(RATE, BLOCK_SAMPLES)
    with pytest.raises(ValueError, match="160-sample blocks"):
        lin.process(np.zeros(100, np.int16), np.zeros(100, np.int16), True)
