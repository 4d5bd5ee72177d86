"""Echo cancellation: take what the speaker plays out of what the microphone hears (WebRTC AEC3).

Two halves meet here. `FarEnd` is the reference: the sink's consumer (PortAudio's output callback thread)
pushes exactly the samples it hands to the device; they are converted to 16 kHz by the project's resampler
and kept in a bounded ring on a sample clock whose anchor is the time those samples reach the device.
`EchoCanceller` runs where capture frames are produced: for every 10 ms of microphone audio it fetches the
reference that was playing when that audio was captured (plus a small lead, so the echo always lags its
reference, as AEC3 requires) and lets AEC3 subtract the echo. AEC3's own delay estimator absorbs what the
clocks cannot know (the acoustic path, the device buffers); the timestamps only keep the delay bounded
and steady.

Clock anchors: each block's DAC/ADC time comes from PortAudio's own stamps, mapped to time.monotonic() by
`devices.StreamClock` (so a callback that ran late on a busy machine does not move the timeline). A block
cannot play before it is handed over, and captured audio cannot arrive before it was recorded: the far
anchor is the latest `play time - n/rate` seen and the near anchor the earliest `record time - m/rate`;
both re-anchor by themselves after an underrun or a reopen.

Cost: AEC3 at 16 kHz mono ~8 ms of CPU per audio-second, the linear filter ~10 ms (scripts/bench_echo.py):
cheap enough to run where the capture frames are cut.

Two outputs: AEC3's (the answer ~70 dB down, but the user suppressed too while it plays) for everything sent
or endpointed, and a linear canceller's (`daemon.audio.linear_echo`: less echo removed, the user's voice
intact) for hearing the wake word over an answer. The linear filter learns only while AEC3 says nobody in
the room is talking, and its reference follows the measured echo delay so what it learned stays valid.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Literal, NamedTuple

import numpy as np

from daemon.audio.frames import INPUT_RATE_HZ
from daemon.audio.linear_echo import LinearEchoCanceller
from daemon.audio.resample import StreamResampler

log = logging.getLogger(__name__)

EchoMode = Literal["auto", "on", "off"]

BLOCK_SAMPLES = INPUT_RATE_HZ // 100
"""AEC3 works on exactly 10 ms blocks."""
RING_S = 4.0
"""How much reference is kept: far more than any device latency plus AEC3's delay range."""
LEAD_MS = 30
"""The reference is taken this much later than the capture time: timestamp errors then only lengthen the
echo delay (which AEC3 estimates) and never make the echo precede its reference (which it cannot cancel)."""
SEARCH_S = 0.5
"""The delay estimate looks this far either side of where the clocks put the echo."""
ESTIMATE_S = 1.0
"""Microphone audio per delay estimate (one FFT correlation; ~1 ms of CPU per second of audio). The windows
do not overlap: two agreeing estimates must be two looks at different audio."""
CONFIDENT = 10.0
"""A correlation peak must stand this many standard deviations above the rest to move the alignment."""
AGREE_S = 0.01
"""Two successive estimates must agree this closely before the alignment moves."""
LAG_RANGE_S = (0.0, 0.15)
"""Where the echo may lag the reference it is fed with before the alignment is corrected: AEC3 cannot
cancel an echo that precedes its reference, and a long lag means reading reference that may not be played yet."""
LINEAR_LAG_S = 0.01
"""Where the linear canceller's reference is put: the echo this long after it. Its filter models one fixed
echo path, so its reference follows every measured change of the clocks' alignment (a callback that
re-anchors the reference, slow drift between two devices) and the taps it learned stay valid."""
LINEAR_STEP_S = 0.00025
"""A measured change of the echo's lag smaller than this (4 samples) leaves the linear reference alone."""
LINEAR_AGREEING = 3
LINEAR_AGREE_S = 0.001
"""LINEAR_AGREEING successive lag measurements within this of each other move the linear reference."""
NEAR_TALK_RATIO = 10 ** (-25 / 10)
"""AEC3's output above this share of the microphone's energy (-25 dB) means someone in the room is talking
(echo alone comes out 50-70 dB down once AEC3 has converged): the linear filter stops learning."""
NEAR_TALK_FLOOR = BLOCK_SAMPLES * 30.0**2
"""...unless it is below a faint floor (RMS 30): a quiet room's noise is no reason to stop."""
TALK_HOLD_BLOCKS = 20
"""After someone spoke, 200 ms more before the filter learns again (the end of a word, its reverberation)."""
FAR_ACTIVE = BLOCK_SAMPLES * 30.0**2
"""The reference must carry sound (RMS 30) for there to be any echo to learn from."""
RESYNC_S = 0.5
"""A capture timestamp this far behind the running anchor means samples were lost (an overrun): re-anchor.
Callback jitter (PulseAudio's ALSA plugin delivers in bursts) stays well below it."""

SELF_CANCELLING = (
    "echo-cancel",
    "echo_cancel",
    "echocancel",
    "aec",
    "jabra",
    "powerconf",
    "anker",
    "emeet",
    "speakerphone",
    "respeaker",
    "xvf3",
    "xmos",
    "poly sync",
    "konftel",
)
"""Capture devices whose name says they already cancel echo (USB speakerphones, XMOS mic boards, a
PulseAudio/PipeWire `module-echo-cancel` source): `audio.echo_cancel = "auto"` leaves those alone."""


def device_cancels_echo(*names: str) -> bool:
    """True when any of the capture device's names (config spec, PortAudio name) marks a device with AEC."""
    low = " ".join(names).lower()
    return any(marker in low for marker in SELF_CANCELLING)


def wanted(mode: EchoMode, *device_names: str) -> bool:
    """Whether to cancel echo for this capture device under `audio.echo_cancel = mode`."""
    if mode == "off":
        return False
    if mode == "on":
        return True
    if device_cancels_echo(*device_names):
        log.info("audio.echo_cancel = auto: %s already cancels echo; leaving it to the device", device_names[-1])
        return False
    return True


class FarEnd:
    """The played audio at 16 kHz on a sample clock: written by the sink's consumer thread, read by capture.

    `push()` is called from PortAudio's output callback with every block it plays (silence included, so the
    timeline has no holes); all state is under one lock, held only for array copies.
    """

    def __init__(self, ring_s: float = RING_S) -> None:
        self._lock = threading.Lock()
        self._ring = np.zeros(int(ring_s * INPUT_RATE_HZ), dtype=np.int16)
        self._written = 0  # absolute index (16 kHz samples) one past the newest sample
        self._anchor_s: float | None = None  # monotonic time at which sample 0 reaches the device
        self._resampler: StreamResampler | None = None

    def open(self, rate_hz: int) -> None:
        """A (re)opened output stream at `rate_hz`: a fresh resampler and a new clock anchor."""
        with self._lock:
            self._resampler = StreamResampler(rate_hz, INPUT_RATE_HZ, quality="QQ")
            self._anchor_s = None

    def push(self, pcm: bytes, now_s: float, latency_s: float = 0.0) -> None:
        """Consumer thread: `pcm` (mono PCM16 at the opened rate) was handed to the device at `now_s` and
        reaches the speaker `latency_s` later (PortAudio's DAC time for the block, when it reports one)."""
        with self._lock:
            resampler = self._resampler
        if resampler is None:
            return
        block = np.frombuffer(resampler.process(pcm), dtype="<i2")
        with self._lock:
            start = self._written
            candidate = now_s + latency_s - start / INPUT_RATE_HZ
            if self._anchor_s is None or candidate > self._anchor_s:
                self._anchor_s = candidate
            if len(block):
                size = len(self._ring)
                kept = block[-size:]
                first = start + len(block) - len(kept)
                self._ring[(first + np.arange(len(kept))) % size] = kept
                self._written = start + len(block)

    def read(self, play_time_s: float, samples: int) -> np.ndarray:
        """The reference that reached the device from `play_time_s` on (zeros where nothing is known)."""
        out = np.zeros(samples, dtype=np.int16)
        with self._lock:
            if self._anchor_s is None:
                return out
            first = round((play_time_s - self._anchor_s) * INPUT_RATE_HZ)
            lo = max(first, self._written - len(self._ring), 0)
            hi = min(first + samples, self._written)
            if hi > lo:
                out[lo - first : hi - first] = self._ring[np.arange(lo, hi) % len(self._ring)]
        return out


class Cleaned(NamedTuple):
    """One frame through both cancellers."""

    pcm: bytes
    """AEC3's output: what is sent, endpointed and listened to for the wake word while nothing plays."""
    linear: bytes | None
    """The linear canceller's (None when echo is not being cancelled): the wake word while an answer plays."""


class EchoCanceller:
    """Cleans capture audio (16 kHz mono PCM16) against a `FarEnd`. Used from one thread only.

    Call `start_stream()` when a capture stream (re)opens, `captured(samples, now_s, latency_s)` from
    the capture callback's timing (how many 16 kHz samples the stream has delivered by `now_s`), and
    `process(pcm, start)` on every frame in order; frames must be a multiple of 10 ms (the 30 ms frames
    are). Sample counts are the stream's own, from 0 at `start_stream()`.
    """

    def __init__(self, far: FarEnd, lead_ms: int = LEAD_MS) -> None:
        from pywebrtc_audio import EchoCanceller as Aec3  # imported here: only when cancellation is on

        self.far = far
        self._aec = Aec3(sample_rate=INPUT_RATE_HZ, num_channels=1, stream_delay_ms=0)
        self._linear = LinearEchoCanceller(INPUT_RATE_HZ, BLOCK_SAMPLES)
        self._talk_hold = 0  # blocks left before the linear filter may learn again after someone spoke
        self._lead_s = lead_ms / 1000
        self._lock = threading.Lock()  # captured() may run on the capture callback thread
        self._near_anchor_s: float | None = None
        self._correction_s = 0.0  # from the delay estimate: added to the clocks' alignment
        self._pending_s: float | None = None  # an out-of-range lag waiting for a second estimate to agree
        self._linear_offset_s: float | None = None  # the linear reference's alignment (None: AEC3's)
        self._offsets: collections.deque[float] = collections.deque(maxlen=LINEAR_AGREEING)
        self._history: list[tuple[np.ndarray, float]] = []  # (raw near, its reference time) since the last estimate
        self.blocks = 0
        self.lag_s: float | None = None  # the last confident measurement: how late the echo comes after its reference

    def start_stream(self) -> None:
        """A new capture stream: its sample count starts at 0 and its clock anchor is unknown."""
        with self._lock:
            self._near_anchor_s = None

    def captured(self, samples: float, now_s: float, latency_s: float = 0.0) -> None:
        """`samples` (16 kHz, since start_stream) had been recorded `latency_s` before `now_s` (PortAudio's
        ADC time for the block, when it reports one): tighten the near anchor."""
        candidate = now_s - latency_s - samples / INPUT_RATE_HZ
        with self._lock:
            anchor = self._near_anchor_s
            if anchor is None or candidate < anchor or candidate - anchor > RESYNC_S:
                self._near_anchor_s = candidate

    def process(self, pcm: bytes, start: int) -> Cleaned:
        """Clean `pcm`, whose first sample is the stream's sample `start` (16 kHz, since start_stream)."""
        near = np.frombuffer(pcm, dtype="<i2")
        if len(near) % BLOCK_SAMPLES:
            raise ValueError(f"echo cancellation needs whole 10 ms blocks, got {len(near)} samples")
        with self._lock:
            anchor = self._near_anchor_s
        if anchor is None:  # no timing yet (the first block of a stream): pass it through
            return Cleaned(pcm, pcm)
        base_s = anchor + start / INPUT_RATE_HZ + self._lead_s
        at_s = base_s + self._correction_s
        far = self.far.read(at_s, len(near))
        far_linear = far
        if self._linear_offset_s is not None:
            far_linear = self.far.read(base_s + self._linear_offset_s, len(near))
        self._history.append((near, at_s))
        if sum(len(h[0]) for h in self._history) >= ESTIMATE_S * INPUT_RATE_HZ:
            self._estimate()
        out = np.empty_like(near)
        linear = np.empty_like(near)
        for at in range(0, len(near), BLOCK_SAMPLES):
            block = slice(at, at + BLOCK_SAMPLES)
            out[block] = self._aec.process(near[block], far[block])
            learn = self._may_learn(near[block], out[block], far_linear[block])
            linear[block] = self._linear.process(near[block], far_linear[block], learn)
        self.blocks += len(near) // BLOCK_SAMPLES
        return Cleaned(out.astype("<i2").tobytes(), linear.astype("<i2").tobytes())

    def _may_learn(self, near: np.ndarray, cleaned: np.ndarray, far: np.ndarray) -> bool:
        """The linear filter learns only from echo: while the answer plays and nobody in the room speaks.
        AEC3 is the judge of the latter: its output is near silent when the microphone holds only echo, and
        carries a person's voice (or the echo it has not learned yet) otherwise."""
        mic = _energy(near)
        if _energy(cleaned) > mic * NEAR_TALK_RATIO + NEAR_TALK_FLOOR:
            self._talk_hold = TALK_HOLD_BLOCKS
        elif self._talk_hold:
            self._talk_hold -= 1
        return not self._talk_hold and _energy(far) > FAR_ACTIVE

    def _estimate(self) -> None:
        """Correlate the last second of microphone audio with the reference around where the clocks put it;
        when the echo clearly sits outside AEC3's comfortable range, move the alignment (the clocks' error
        is mostly constant: buffers the host API does not report)."""
        near = np.concatenate([h[0] for h in self._history]).astype(np.float64)
        t0 = self._history[0][1]
        self._history = []
        pad = int(SEARCH_S * INPUT_RATE_HZ)
        far = self.far.read(t0 - SEARCH_S, len(near) + 2 * pad).astype(np.float64)
        if np.sqrt(np.mean(far**2)) < 100 or np.sqrt(np.mean(near**2)) < 30:
            return  # nothing (audible) was played or heard: nothing to align on
        n = 1 << int(np.ceil(np.log2(len(far) + len(near))))
        cross = np.fft.rfft(far, n) * np.conj(np.fft.rfft(near, n))
        corr = np.fft.irfft(cross / (np.abs(cross) + 1e-9), n)[: 2 * pad + 1]  # GCC-PHAT: a sharp peak
        mag = np.abs(corr)
        peak = int(np.argmax(mag))
        if mag[peak] < CONFIDENT * (np.std(mag) + 1e-12):
            return
        # near[i] matches far[i + peak]; the reference fed with near[i] is far[i + pad]
        lag_s = (pad - peak) / INPUT_RATE_HZ
        self.lag_s = lag_s
        self._follow_linear(lag_s)
        if LAG_RANGE_S[0] <= lag_s <= LAG_RANGE_S[1]:
            self._pending_s = None
        elif self._pending_s is None or abs(lag_s - self._pending_s) > AGREE_S:
            self._pending_s = lag_s  # one estimate can be fooled (a repeated phrase): wait for a second
        else:
            move = lag_s - self._lead_s
            self._correction_s -= move
            self._pending_s = None
            log.info(
                "echo arrives %.0f ms after its reference; moving the reference by %.0f ms",
                lag_s * 1000,
                -move * 1000,
            )

    def _follow_linear(self, lag_s: float) -> None:
        """Keep the echo LINEAR_LAG_S after the linear canceller's reference, whatever the clocks did: the
        echo of the reference fed at `correction` is the reference at `correction - lag`. Only three
        measurements in a row that agree move it (to their median): a reflection or a repeated phrase winning
        one correlation must not, as every move costs the filter part of what it learned."""
        self._offsets.append(self._correction_s - lag_s + LINEAR_LAG_S)
        if self._linear_offset_s is None:
            self._linear_offset_s = self._offsets[-1]  # better than the clocks' guess until confirmed
            return
        if len(self._offsets) < LINEAR_AGREEING or max(self._offsets) - min(self._offsets) > LINEAR_AGREE_S:
            return
        offset = float(np.median(self._offsets))
        if abs(offset - self._linear_offset_s) >= LINEAR_STEP_S:
            self._linear_offset_s = offset

    def reset(self) -> None:
        """Forget the learned echo path (a different output device)."""
        self._aec.reset()
        self._linear.reset()


__all__ = ["Cleaned", "EchoCanceller", "EchoMode", "FarEnd", "device_cancels_echo", "wanted"]


def _energy(block: np.ndarray) -> float:
    samples = block.astype(np.float64)
    return float(np.dot(samples, samples))
