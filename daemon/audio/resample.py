"""The one place where sample rates, channel counts and sample widths change.

Capture is always converted to 16 kHz mono PCM16 (what openWakeWord and webrtcvad want); playback is converted
to whatever rate the output device runs at. soxr does the resampling: it is fast, streaming and well kept, and
its streaming mode carries filter state across chunks, so chunk boundaries leave no clicks.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from daemon.audio.frames import INPUT_RATE_HZ, SAMPLE_WIDTH

WAV_BLOCK_FRAMES = 16_384
"""Frames read from a WAV file per step: small enough for a Pi's memory, large enough to be cheap."""


class AudioFileError(Exception):
    """A WAV file that is missing or not readable PCM: the message names the file and what was expected."""


class StreamResampler:
    """Streaming int16 mono resampler: feed PCM16 bytes at `in_rate_hz`, get PCM16 bytes at `out_rate_hz`.

    Equal rates pass through untouched. Call `process(b"", last=True)` at the end of a stream to get the
    samples soxr still holds back (its filter delay, a few ms).
    """

    def __init__(self, in_rate_hz: int, out_rate_hz: int, quality: str = "HQ") -> None:
        if in_rate_hz <= 0 or out_rate_hz <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate_hz} Hz -> {out_rate_hz} Hz")
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        self._stream = (
            None
            if in_rate_hz == out_rate_hz
            else soxr.ResampleStream(in_rate_hz, out_rate_hz, 1, dtype="int16", quality=quality)
        )

    def process(self, pcm: bytes, last: bool = False) -> bytes:
        if len(pcm) % SAMPLE_WIDTH:
            raise ValueError(f"PCM16 input must have an even byte count, got {len(pcm)} bytes")
        if self._stream is None:
            return pcm
        samples = np.frombuffer(pcm, dtype="<i2")
        out = self._stream.resample_chunk(samples, last=last)
        return np.asarray(out, dtype="<i2").tobytes()


def to_mono16(pcm: bytes, channels: int, width: int) -> bytes:
    """Interleaved integer PCM (width 1 = unsigned 8-bit, 2, 3 or 4 bytes) → mono PCM16 (channel mean)."""
    if width not in (1, 2, 3, 4):
        raise ValueError(f"sample width must be 1, 2, 3 or 4 bytes, got {width}")
    if channels < 1:
        raise ValueError(f"channel count must be at least 1, got {channels}")
    usable = len(pcm) - len(pcm) % (width * channels)
    raw = np.frombuffer(pcm[:usable], dtype=np.uint8)
    if width == 1:
        data = (raw.astype(np.int32) - 128) << 8
    elif width == 2:
        data = raw.view("<i2").astype(np.int32)
    elif width == 3:
        b = raw.reshape(-1, 3).astype(np.int32)
        data = ((b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8) >> 16  # sign-extend, keep top 16 bits
    else:
        data = raw.view("<i4").astype(np.int32) >> 16
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int32)
    return data.astype("<i2").tobytes()


@dataclass(frozen=True)
class WavInfo:
    rate_hz: int
    channels: int
    width: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate_hz


def open_wav(path: str | Path) -> wave.Wave_read:
    """Open a PCM WAV for reading, turning every failure into an AudioFileError that names the file."""
    p = Path(path)
    try:
        return wave.open(str(p), "rb")
    except FileNotFoundError:
        raise AudioFileError(f"{p}: file not found (expected a PCM WAV file)") from None
    except IsADirectoryError:
        raise AudioFileError(f"{p}: is a directory (expected a PCM WAV file)") from None
    except PermissionError:
        raise AudioFileError(f"{p}: permission denied (make it readable by the hark user)") from None
    except (wave.Error, EOFError) as e:
        why = str(e) or "the file ends inside the header"
        raise AudioFileError(f"{p}: not a readable PCM WAV file ({why}); expected 8/16/24/32-bit integer PCM") from e
    except OSError as e:
        raise AudioFileError(f"{p}: cannot read ({e})") from e


def iter_wav_mono16(path: str | Path, out_rate_hz: int = INPUT_RATE_HZ) -> Iterator[bytes]:
    """Stream a WAV (any rate, channels, integer width) as mono PCM16 blocks at `out_rate_hz`."""
    with open_wav(path) as wf:
        channels, width, rate = wf.getnchannels(), wf.getsampwidth(), wf.getframerate()
        if rate <= 0 or width not in (1, 2, 3, 4):
            raise AudioFileError(f"{path}: unsupported WAV ({rate} Hz, {width * 8}-bit); expected integer PCM")
        resampler = StreamResampler(rate, out_rate_hz)
        while True:
            try:
                raw = wf.readframes(WAV_BLOCK_FRAMES)
            except (wave.Error, EOFError, OSError) as e:
                raise AudioFileError(f"{path}: truncated or unreadable WAV data ({e})") from e
            last = len(raw) < WAV_BLOCK_FRAMES * channels * width
            out = resampler.process(to_mono16(raw, channels, width), last=last)
            if out:
                yield out
            if last:
                return


def read_wav_mono16(path: str | Path, out_rate_hz: int | None = INPUT_RATE_HZ) -> tuple[bytes, int]:
    """A whole WAV as mono PCM16 at `out_rate_hz` (None = keep the file's rate). Returns (pcm, rate_hz)."""
    if out_rate_hz is None:
        out_rate_hz = wav_info(path).rate_hz
    return b"".join(iter_wav_mono16(path, out_rate_hz)), out_rate_hz


def wav_info(path: str | Path) -> WavInfo:
    with open_wav(path) as wf:
        return WavInfo(wf.getframerate(), wf.getnchannels(), wf.getsampwidth(), wf.getnframes())
