"""A linear echo canceller for barge-in: an adaptive filter that subtracts the echo it predicts, nothing more.

Why a second canceller beside AEC3: AEC3 removes the answer from the microphone ~70 dB deep, but its
residual-echo suppressor also removes the user while the answer plays (double talk): "hey jarvis" spoken
over the answer is gone from its output. A linear filter takes away less of the echo (10-30 dB, by room)
but leaves the user's voice intact, which is what the wake detector needs to hear an interruption.

Why our own (a partitioned-block frequency-domain NLMS, the textbook structure of every linear AEC stage):
the filter must stop learning while the user talks, or it learns the user as echo and then adds noise for
seconds. Speex's MDF (libspeexdsp) was measured here and does exactly that on double talk (its residual grew
larger than the echo it was cancelling), and it has no way to hold adaptation; the packaged AEC3s do not
expose their own linear stage. The caller decides when to learn (see daemon.audio.echo: AEC3's output tells
whether anyone in the room is speaking). ~40 lines of numpy, batched over the partitions.
"""

from __future__ import annotations

import numpy as np

TAIL_MS = 250
"""Echo path the filter models: the echo LINEAR_LAG_S after its reference plus a room's reverberation."""
STEP = 0.5
"""NLMS step: fast enough to learn a room within the first answer, small enough to stay put afterwards."""
FLOOR = 1e4
"""Added to each bin's reference power: no giant steps in bins the reference leaves empty."""


class LinearEchoCanceller:
    """Overlap-save PBFDAF on int16 blocks of `block` samples; used from one thread (the capture path)."""

    def __init__(self, rate_hz: int, block: int, tail_ms: int = TAIL_MS) -> None:
        self._block = block
        self._partitions = max(1, -(-rate_hz * tail_ms // 1000 // block))
        bins = block + 1  # rfft of 2 * block
        self._weights = np.zeros((self._partitions, bins), dtype=np.complex128)
        self._spectra = np.zeros((self._partitions, bins), dtype=np.complex128)  # newest reference block first
        self._previous = np.zeros(block)

    def process(self, near: np.ndarray, far: np.ndarray, learn: bool) -> np.ndarray:
        """`near` minus the echo of `far` the filter predicts (both one block of int16); adapt if `learn`."""
        n = self._block
        if len(near) != n or len(far) != n:
            raise ValueError(f"the linear canceller takes {n}-sample blocks, got {len(near)}/{len(far)}")
        current = far.astype(np.float64)
        spectrum = np.fft.rfft(np.concatenate([self._previous, current]))
        self._previous = current
        self._spectra = np.roll(self._spectra, 1, axis=0)
        self._spectra[0] = spectrum
        estimate = np.fft.irfft((self._weights * self._spectra).sum(axis=0), 2 * n)[n:]
        error = near.astype(np.float64) - estimate
        if learn:
            # NLMS per bin: the step normalised by the reference power the whole filter spans
            power = (self._spectra.real**2 + self._spectra.imag**2).sum(axis=0) + FLOOR
            err = np.fft.rfft(np.concatenate([np.zeros(n), error]))
            gradient = np.conj(self._spectra) * (err * STEP / power)
            # keep each partition's impulse response `block` long (the overlap-save constraint)
            taps = np.fft.irfft(gradient, 2 * n, axis=1)
            taps[:, n:] = 0.0
            self._weights += np.fft.rfft(taps, axis=1)
        return np.clip(error, -32768, 32767).astype(np.int16)

    def reset(self) -> None:
        """Forget the learned echo path."""
        self._weights[:] = 0.0
        self._spectra[:] = 0.0
        self._previous[:] = 0.0


__all__ = ["LinearEchoCanceller"]
