"""Capture: 16 kHz mono PCM16 frames of exactly FRAME_SAMPLES, each stamped with its sample offset.

Two sources behind one interface: a PyAudio device (the PortAudio callback thread hands raw blocks to the
loop with `call_soon_threadsafe`; nothing on the loop ever blocks on audio) and a WAV file (tests, benchmarks,
`hark run` on a recording). Device trouble never raises out of the iterator: the source yields DeviceLost
once, keeps reopening with backoff, and yields DeviceRestored once frames flow again.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyaudio

from daemon.audio import devices
from daemon.audio.echo import Cleaned, EchoCanceller, EchoMode, FarEnd, wanted
from daemon.audio.frames import (
    FRAME_SAMPLES,
    INPUT_RATE_HZ,
    SAMPLE_WIDTH,
    AudioFrame,
    DeviceLost,
    DeviceRestored,
    SourceItem,
)
from daemon.audio.resample import StreamResampler, iter_wav_mono16, open_wav, to_mono16
from daemon.config.settings import AudioSettings
from daemon.observe.bus import EventBus
from daemon.observe.events import DeviceLostEvent, DeviceRestoredEvent
from daemon.system import tasks

log = logging.getLogger(__name__)

FRAME_BYTES = FRAME_SAMPLES * SAMPLE_WIDTH
QUEUE_FRAMES = 200
"""4 s of audio: if the loop falls this far behind, the oldest frames are dropped (never the callback)."""
DROP_WARN_EVERY_S = 10.0


class AudioSource(abc.ABC):
    """Async iterator of SourceItem. `pause()` really stops capture (mute); `aclose()` ends the iteration."""

    def __init__(self) -> None:
        self._paused = False
        self._closed = False
        self._sample = 0

    def __aiter__(self) -> AudioSource:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> SourceItem: ...

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def echo_cancelling(self) -> bool:
        """True while the captured audio goes through the echo canceller (the wake threshold can relax)."""
        return False

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    async def aclose(self) -> None:
        self._closed = True

    def _frame(self, pcm: bytes, linear: bytes | None = None) -> AudioFrame:
        frame = AudioFrame(pcm, self._sample, linear)
        self._sample += FRAME_SAMPLES
        return frame


def open_source(settings: AudioSettings, bus: EventBus, echo_ref: FarEnd | None = None) -> AudioSource:
    """Build the source named by `audio.input`. A wav: path is checked now (AudioFileError names it).

    `echo_ref` is what the speaker plays; with it, `audio.echo_cancel` decides whether capture is cleaned
    (a wav: input never is: a recording holds no echo of this run's answers)."""
    spec = settings.input
    if spec.startswith("wav:"):
        return WavSource(Path(spec[4:]).expanduser(), realtime_pace=settings.realtime_pace)
    return PyAudioSource(
        spec,
        bus,
        reopen_min_s=settings.reopen_min_s,
        reopen_max_s=settings.reopen_max_s,
        echo_mode=settings.echo_cancel if echo_ref is not None else "off",
        echo_ref=echo_ref,
    )


class _Framer:
    """Cuts a byte stream into exact frames; the remainder waits for the next block."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def push(self, pcm: bytes) -> Iterator[bytes]:
        self._buf += pcm
        while len(self._buf) >= FRAME_BYTES:
            yield bytes(self._buf[:FRAME_BYTES])
            del self._buf[:FRAME_BYTES]

    def tail(self) -> bytes | None:
        """What is left, zero-padded to a whole frame (None if nothing is left)."""
        if not self._buf:
            return None
        out = bytes(self._buf) + bytes(FRAME_BYTES - len(self._buf))
        self._buf.clear()
        return out


class WavSource(AudioSource):
    """Frames from a WAV (any rate/channels/integer width), in real time or as fast as they are read.

    While paused with real-time pacing the file keeps "playing" and its frames are discarded, as a muted
    microphone would lose them; without pacing there is no clock, so reading simply stops.
    """

    def __init__(self, path: Path, realtime_pace: bool = True) -> None:
        super().__init__()
        open_wav(path).close()  # fail now, with the path in the message, not at the first frame
        self.path = path
        self.realtime_pace = realtime_pace
        self._frames = self._read()
        self._t0: float | None = None
        self._resume = asyncio.Event()
        self._paused_at = 0.0
        self._muted: tuple[float, float] = (0.0, 0.0)  # the last pause, in monotonic time

    def _read(self) -> Iterator[bytes]:
        framer = _Framer()
        for block in iter_wav_mono16(self.path, INPUT_RATE_HZ):
            yield from framer.push(block)
        tail = framer.tail()
        if tail is not None:
            yield tail

    def pause(self) -> None:
        if not self._paused:
            self._paused_at = time.monotonic()
        super().pause()

    def resume(self) -> None:
        if self._paused:
            self._muted = (self._paused_at, time.monotonic())
        super().resume()
        self._resume.set()

    async def aclose(self) -> None:
        await super().aclose()
        self._resume.set()

    async def __anext__(self) -> AudioFrame:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._paused and not self.realtime_pace:
                self._resume.clear()
                await self._resume.wait()
                continue
            pcm = next(self._frames, None)
            if pcm is None:
                self._closed = True
                raise StopAsyncIteration
            frame = self._frame(pcm)
            if self.realtime_pace:
                due = self._due(frame)
                if self._muted[0] <= due < self._muted[1]:
                    continue  # it "played" while muted: lost, even if nobody was reading then
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                if self._paused:
                    continue
            else:
                await asyncio.sleep(0)  # let the rest of the loop run between frames
            return frame

    def _due(self, frame: AudioFrame) -> float:
        """When the frame's last sample would have been captured (an absolute clock: no drift)."""
        if self._t0 is None:
            self._t0 = time.monotonic() - frame.sample / INPUT_RATE_HZ
        return self._t0 + frame.end_sample / INPUT_RATE_HZ


class PyAudioSource(AudioSource):
    """Capture from a PortAudio device, reopened with backoff whenever it fails or goes quiet."""

    def __init__(
        self,
        spec: str,
        bus: EventBus,
        *,
        reopen_min_s: float = 0.5,
        reopen_max_s: float = 10.0,
        stall_s: float = 1.0,
        start_timeout_s: float = 5.0,
        queue_frames: int = QUEUE_FRAMES,
        echo_mode: EchoMode = "off",
        echo_ref: FarEnd | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self._echo_mode: EchoMode = echo_mode if echo_ref is not None else "off"
        self._echo_ref = echo_ref
        self._echo: EchoCanceller | None = None  # built on the first stream that wants it; kept across reopens
        self._converter: _Converter | None = None
        self._bus = bus
        self._frames: collections.deque[AudioFrame] = collections.deque()
        self._events: collections.deque[DeviceLost | DeviceRestored] = collections.deque()
        self._queue_frames = queue_frames
        self._ready = asyncio.Event()
        self._dropped = 0
        self._last_drop_warn = 0.0
        self._keeper = devices.StreamKeeper(
            "input",
            self._open,
            on_lost=self._lost,
            on_restored=self._restored,
            reopen_min_s=reopen_min_s,
            reopen_max_s=reopen_max_s,
            stall_s=stall_s,
            start_timeout_s=start_timeout_s,
        )
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- the loop side ---

    async def __anext__(self) -> SourceItem:
        if self._task is None and not self._closed:
            self._loop = asyncio.get_running_loop()
            self._task = tasks.spawn(self._keeper.run(), "hark-capture")
        while True:
            if self._events:
                return self._events.popleft()
            if self._frames:
                return self._frames.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()

    def pause(self) -> None:
        """Mute: the supervisor closes the stream (the device is really released); queued audio is dropped."""
        super().pause()
        self._keeper.wanted = False
        self._frames.clear()
        self._keeper.poke()

    def resume(self) -> None:
        super().resume()
        self._keeper.wanted = True
        self._keeper.poke()

    async def aclose(self) -> None:
        await super().aclose()
        self._keeper.closing = True
        self._keeper.poke()
        self._ready.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10.0)
            except asyncio.TimeoutError:
                log.warning("capture device did not close within 10 s; abandoning it")
            except Exception:
                log.exception("capture supervisor failed while closing")

    def _lost(self, detail: str) -> None:
        self._bus.publish(DeviceLostEvent(detail, kind="input", device=self.spec))
        self._events.append(DeviceLost(detail))
        self._ready.set()

    def _restored(self, detail: str) -> None:
        self._bus.publish(DeviceRestoredEvent(detail, kind="input", device=self.spec))
        self._events.append(DeviceRestored(detail))
        self._ready.set()

    @property
    def echo_cancelling(self) -> bool:
        converter = self._converter
        return converter is not None and converter.echo is not None

    def _deliver(self, converter: _Converter, pcm: bytes, recorded_s: float) -> None:
        """On the loop: convert, frame, cancel echo and queue a raw block (recorded at `recorded_s`, monotonic)
        from the callback thread."""
        if self._paused or self._closed:  # blocks still in flight when muted are dropped
            return
        for frame_pcm, linear in converter.push(pcm, recorded_s):
            if len(self._frames) >= self._queue_frames:
                self._frames.popleft()
                self._note_drop()
            self._frames.append(self._frame(frame_pcm, linear))
        self._ready.set()

    def _note_drop(self) -> None:
        self._dropped += 1
        now = time.monotonic()
        if now - self._last_drop_warn >= DROP_WARN_EVERY_S:
            self._last_drop_warn = now
            log.warning(
                "capture queue full: dropped %d frames so far (the event loop is falling behind the "
                "microphone; is the CPU overloaded?)",
                self._dropped,
            )

    # --- the worker-thread side ---

    def _open(self) -> devices.OpenStream:
        """Runs in a worker thread (PortAudio init and open block)."""
        handle = devices.open_stream(self.spec, "input", (INPUT_RATE_HZ,), 80, self._make_callback)
        converter = self._converter
        if (
            converter is not None
            and self._echo_ref is not None
            and wanted(self._echo_mode, self.spec, handle.device.name)
        ):
            if self._echo is None:
                self._echo = EchoCanceller(self._echo_ref)
                log.info("echo cancellation on for %s (WebRTC AEC3)", handle.device.name)
            self._echo.start_stream()
            converter.echo = self._echo  # an attribute store: the first blocks may pass uncleaned
        return handle

    def _make_callback(self, rate_hz: int, channels: int) -> Any:
        loop = self._loop
        assert loop is not None
        converter = self._converter = _Converter(rate_hz, channels)
        keeper = self._keeper
        clock = devices.StreamClock("input")

        def callback(in_data: bytes | None, _count: int, times: Any, _status: int) -> tuple[None, int]:
            keeper.heartbeat()
            if in_data:
                recorded = clock.block_time(times, time.monotonic())
                try:
                    loop.call_soon_threadsafe(self._deliver, converter, in_data, recorded)
                except RuntimeError:  # the loop is closed: we are shutting down
                    return None, pyaudio.paComplete
            return None, pyaudio.paContinue

        return callback


class _Converter:
    """Device format → 16 kHz mono frames, echo-cancelled when `echo` is set. Lives with one stream; used
    only on the loop."""

    def __init__(self, rate_hz: int, channels: int) -> None:
        self.channels = channels
        self.rate_hz = rate_hz
        self.echo: EchoCanceller | None = None
        self._resampler = StreamResampler(rate_hz, INPUT_RATE_HZ)
        self._framer = _Framer()
        self._in_samples = 0  # device samples received, and 16 kHz samples framed: the stream's two clocks
        self._framed = 0

    def push(self, pcm: bytes, recorded_s: float = 0.0) -> Iterator[Cleaned]:
        mono = pcm if self.channels == 1 else to_mono16(pcm, self.channels, SAMPLE_WIDTH)
        self._in_samples += len(mono) // SAMPLE_WIDTH
        echo = self.echo
        if echo is None:
            return self._count(self._framer.push(self._resampler.process(mono)))
        echo.captured(self._in_samples * INPUT_RATE_HZ / self.rate_hz, recorded_s)
        return self._cancel(echo, self._framer.push(self._resampler.process(mono)))

    def _count(self, frames: Iterator[bytes]) -> Iterator[Cleaned]:
        for frame in frames:
            yield Cleaned(frame, None)
            self._framed += FRAME_SAMPLES

    def _cancel(self, echo: EchoCanceller, frames: Iterator[bytes]) -> Iterator[Cleaned]:
        for frame in frames:
            yield echo.process(frame, self._framed)
            self._framed += FRAME_SAMPLES
