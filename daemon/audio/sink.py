"""Playback: one sink for every voice (Realtime, Piper, chimes): jitter buffer, volume, instant stop.

Written audio is converted to the device rate at once (on the loop) and queued in one lock-protected buffer;
the consumer (the PortAudio callback thread, or a clock task for a paced WAV) takes from it and applies the
volume at that moment, so a volume change is heard at once even when seconds of answer are already queued.
`stop()` empties the buffer under the lock: barge-in is silent by the next device block (20 ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import wave
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyaudio

from daemon.audio import devices
from daemon.audio.echo import FarEnd
from daemon.audio.frames import SAMPLE_WIDTH, AudioChunk
from daemon.audio.resample import StreamResampler, to_mono16
from daemon.config.settings import AudioSettings
from daemon.observe.bus import EventBus
from daemon.observe.events import DeviceLostEvent, DeviceRestoredEvent, PlaybackStarted, PlaybackStopped
from daemon.system import tasks

log = logging.getLogger(__name__)

WAV_RATE_HZ = 24_000
"""A wav: output is always written at the Realtime API's rate."""
BLOCK_MS = 20
"""Device block: the granularity of stop() and of the played counter."""
STEADY_S = 0.2
"""A new output stream counts as up once its callback has run this long (priming bursts don't count)."""
DEVICE_RATES = (24_000, 48_000)
"""Preferred output rates: 24 kHz needs no resampling for Realtime audio; 48 kHz is what most DACs run at."""


class Playback(str, Enum):
    """The sink's one state (written only under its lock: the loop and the consumer thread both read it)."""

    IDLE = "idle"
    """Nothing to play: the consumer outputs silence."""
    BUFFERING = "buffering"
    """A stream began; waiting for `buffer_ms` of audio before the consumer starts taking it."""
    PLAYING = "playing"
    """The consumer takes audio as the device asks for it; more may still be written."""
    DRAINING = "draining"
    """Everything is written (`drain()`); the stream ends when the consumer has taken the rest."""


class AudioSink:
    """The playback interface the assistant relies on; subclasses only supply the consumer.

    Thread-safety: the consumer (PortAudio's callback thread, or a clock task) and the loop share the
    buffer, the state, the played counter, the stream id, the rate and the volume; all of them are read and
    written under `_lock` only, so the consumer never sees a stream half-switched."""

    def __init__(self, bus: EventBus, rate_hz: int, volume: int, buffer_ms: int) -> None:
        self._bus = bus
        self._lock = threading.Lock()
        self._rate_hz = rate_hz
        self._buffer_bytes = rate_hz * buffer_ms // 1000 * SAMPLE_WIDTH
        self._buf = bytearray()
        self._state = Playback.IDLE
        self._played = 0  # samples of the current stream the consumer took
        self._stream_id = 0
        self._resampler: StreamResampler | None = None  # loop only
        self._waiters: list[tuple[int, asyncio.Future[int]]] = []  # (stream id, future); loop only
        self._loop: asyncio.AbstractEventLoop | None = None
        self._volume = 0
        self.volume = volume

    # --- the interface ---

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    @property
    def rate_hz(self) -> int:
        with self._lock:
            return self._rate_hz

    @property
    def state(self) -> Playback:
        with self._lock:
            return self._state

    def begin(self) -> None:
        """A new stream: whatever still plays is cut (reason "stopped") and the played counter restarts."""
        if self.state is not Playback.IDLE:
            self.stop()
        with self._lock:
            self._stream_id += 1
            self._buf.clear()
            self._state, self._played = Playback.BUFFERING, 0
        self._resampler = None

    def write(self, chunk: AudioChunk) -> None:
        """Queue audio (any rate/channels); never blocks. Starts a stream implicitly if none is open."""
        if self.state is Playback.IDLE:
            self.begin()
        pcm = chunk.pcm if chunk.channels == 1 else to_mono16(chunk.pcm, chunk.channels, SAMPLE_WIDTH)
        if self._resampler is None or self._resampler.in_rate_hz != chunk.rate_hz:
            self._queue(self._flush_resampler())
            self._resampler = StreamResampler(chunk.rate_hz, self.rate_hz)
        self._queue(self._resampler.process(pcm))

    async def drain(self) -> int:
        """Wait until everything written has been played; returns the played ms of this stream."""
        if self.state is Playback.IDLE:
            return self._played_ms()
        self._queue(self._flush_resampler())
        with self._lock:
            self._state = Playback.DRAINING
            remaining_s = len(self._buf) / SAMPLE_WIDTH / self._rate_hz
            sid = self._stream_id
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiters.append((sid, fut))
        self._kick()
        try:
            return await asyncio.wait_for(asyncio.shield(fut), remaining_s + 10.0)
        except asyncio.TimeoutError:
            log.warning("playback did not finish %.1f s after it should have; stopping it", remaining_s + 10)
            return self.stop()

    def stop(self) -> int:
        """Silence now: drop everything queued. Returns the ms of this stream the device consumed."""
        with self._lock:
            was = self._state
            self._buf.clear()
            self._state = Playback.IDLE
            played, sid, rate = self._played, self._stream_id, self._rate_hz
        self._resampler = None
        ms = played * 1000 // rate
        if was is not Playback.IDLE:
            self._bus.publish(PlaybackStopped(ms, "stopped"))
            self._resolve(sid, ms)
        return ms

    @property
    def volume(self) -> int:
        return self._volume

    @volume.setter
    def volume(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise ValueError(f"volume must be an integer from 0 to 100, got {value!r}")
        with self._lock:
            self._volume = value

    @property
    def playing(self) -> bool:
        """True from the first write of a stream until it drained or was stopped."""
        return self.state is not Playback.IDLE

    async def aclose(self) -> None:
        self.stop()

    # --- shared machinery ---

    def _played_ms(self) -> int:
        with self._lock:
            return self._played * 1000 // self._rate_hz

    def _set_rate(self, rate_hz: int, buffer_ms: int) -> None:
        with self._lock:
            self._rate_hz = rate_hz
            self._buffer_bytes = rate_hz * buffer_ms // 1000 * SAMPLE_WIDTH

    def _flush_resampler(self) -> bytes:
        if self._resampler is None:
            return b""
        tail = self._resampler.process(b"", last=True)
        self._resampler = None
        return tail

    def _queue(self, pcm: bytes) -> None:
        if not pcm:
            return
        with self._lock:
            self._buf += pcm
            if self._state is Playback.BUFFERING and len(self._buf) >= self._buffer_bytes:
                self._state = Playback.PLAYING
        self._kick()

    def _kick(self) -> None:
        """Hook for consumers that play as soon as audio is there (the unpaced WAV sink)."""

    def _take(self, samples: int, rate_hz: int | None = None) -> tuple[bytes, int, bool, bool]:
        """Consumer side (any thread): up to `samples` of audio with volume applied. `rate_hz`: the rate the
        consumer plays at; nothing is taken while the stream is at another rate (a switch in progress).

        Returns (pcm, stream_id, first, drained); pcm is empty when nothing is due.
        """
        with self._lock:
            if self._state not in (Playback.PLAYING, Playback.DRAINING) or rate_hz not in (None, self._rate_hz):
                return b"", self._stream_id, False, False
            pcm = bytes(self._buf[: samples * SAMPLE_WIDTH])
            del self._buf[: len(pcm)]
            first = bool(pcm) and self._played == 0
            self._played += len(pcm) // SAMPLE_WIDTH
            drained = self._state is Playback.DRAINING and not self._buf
            if drained:
                self._state = Playback.IDLE
            sid, played, volume, rate = self._stream_id, self._played, self._volume, self._rate_hz
        if pcm and volume != 100:
            scaled = np.frombuffer(pcm, "<i2").astype(np.float32) * (volume / 100.0)
            pcm = scaled.astype("<i2").tobytes()
        if first or drained:
            self._notify(sid, first, drained, played, rate)
        return pcm, sid, first, drained

    def _notify(self, sid: int, first: bool, drained: bool, played: int, rate_hz: int) -> None:
        """Report stream start/end on the loop (called from the consumer's thread or the loop itself)."""
        loop = self._loop
        if loop is None:
            return
        try:
            loop.call_soon_threadsafe(self._on_progress, sid, first, drained, played, rate_hz)
        except RuntimeError:  # loop closed: shutting down
            pass

    def _on_progress(self, sid: int, first: bool, drained: bool, played: int, rate_hz: int) -> None:
        ms = played * 1000 // rate_hz
        if first:
            self._bus.publish(PlaybackStarted(rate_hz))
        if drained:
            self._bus.publish(PlaybackStopped(ms, "drained"))
            self._resolve(sid, ms)

    def _resolve(self, sid: int, ms: int) -> None:
        """Wake the drain() calls of stream `sid` (never those of a newer stream)."""
        keep = []
        for wsid, fut in self._waiters:
            if wsid != sid:
                keep.append((wsid, fut))
            elif not fut.done():
                fut.set_result(ms)
        self._waiters = keep


def open_sink(settings: AudioSettings, bus: EventBus, echo_ref: FarEnd | None = None) -> AudioSink:
    """Build the sink named by `audio.output`; `await sink.start()` opens it. `echo_ref` receives every
    block the device plays (the echo canceller's reference; a wav: output has no echo and ignores it)."""
    spec = settings.output
    if spec.startswith("wav:"):
        return WavSink(
            Path(spec[4:]).expanduser(),
            bus,
            volume=settings.volume,
            buffer_ms=settings.output_buffer_ms,
            realtime_pace=settings.realtime_pace,
        )
    return PyAudioSink(
        spec,
        bus,
        volume=settings.volume,
        buffer_ms=settings.output_buffer_ms,
        reopen_min_s=settings.reopen_min_s,
        reopen_max_s=settings.reopen_max_s,
        echo_ref=echo_ref,
    )


class WavSink(AudioSink):
    """Writes what would have been played, at 24 kHz mono; silence between streams is left out.

    With `realtime_pace` a clock task consumes at real-time speed, so drain/stop/played_ms behave like a
    speaker; without it audio is "played" the moment it is written.
    """

    def __init__(
        self, path: Path, bus: EventBus, *, volume: int = 70, buffer_ms: int = 120, realtime_pace: bool = True
    ) -> None:
        super().__init__(bus, WAV_RATE_HZ, volume, buffer_ms if realtime_pace else 0)
        self.path = path
        self.realtime_pace = realtime_pace
        self._wav: wave.Wave_write | None = None
        self._fh: BinaryIO | None = None
        self._clock: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await super().start()
        try:
            fh = self.path.open("wb")  # noqa: SIM115 - kept open for the sink's lifetime
        except OSError as e:
            raise OSError(f"audio.output = 'wav:{self.path}': cannot write the file ({e})") from e
        self._fh = fh
        wf = wave.open(fh, "wb")  # noqa: SIM115
        wf.setnchannels(1)
        wf.setsampwidth(SAMPLE_WIDTH)
        wf.setframerate(WAV_RATE_HZ)
        self._wav = wf
        if self.realtime_pace:
            self._clock = tasks.spawn(self._run_clock(), "hark-wav-sink")

    def _kick(self) -> None:
        if not self.realtime_pace:
            while True:
                pcm, _, _, drained = self._take(WAV_RATE_HZ)
                self._emit(pcm)
                if not pcm or drained:
                    return

    def _emit(self, pcm: bytes) -> None:
        if pcm and self._wav is not None:
            self._wav.writeframes(pcm)

    async def _run_clock(self) -> None:
        block = WAV_RATE_HZ * BLOCK_MS // 1000
        t0 = time.monotonic()
        tick = 0
        while True:
            tick += 1
            await asyncio.sleep(max(0.0, t0 + tick * BLOCK_MS / 1000 - time.monotonic()))
            self._emit(self._take(block)[0])

    async def aclose(self) -> None:
        await super().aclose()
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
        if self._wav is not None:
            self._wav.close()  # writes the final header; the file object is ours to close
            self._wav = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class PyAudioSink(AudioSink):
    """Plays through a PortAudio output stream kept running (silence when idle), reopened on failure."""

    def __init__(
        self,
        spec: str,
        bus: EventBus,
        *,
        volume: int = 70,
        buffer_ms: int = 120,
        reopen_min_s: float = 0.5,
        reopen_max_s: float = 10.0,
        rates: tuple[int, ...] = DEVICE_RATES,
        echo_ref: FarEnd | None = None,
    ) -> None:
        # The real rate is known once the device is open; until then assume the first preference.
        super().__init__(bus, rates[0], volume, buffer_ms)
        self.spec = spec
        self._buffer_ms = buffer_ms
        self._echo_ref = echo_ref
        self._device_ok = True  # False only after a loss: until the first open, writes are kept
        self._warned_down = False
        self._keeper = devices.StreamKeeper(
            "output",
            functools.partial(devices.open_stream, spec, "output", rates, BLOCK_MS, self._make_callback),
            on_lost=self._lost,
            on_restored=self._restored,
            reopen_min_s=reopen_min_s,
            reopen_max_s=reopen_max_s,
        )
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()

    async def start(self, timeout_s: float = 5.0) -> None:
        """Open the device and wait (bounded) until it consumes audio steadily; if it is not there yet,
        playback starts whenever it appears (logged)."""
        await super().start()
        self._task = tasks.spawn(self._keeper.run(), "hark-playback")
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._up.wait(), timeout_s)

    def write(self, chunk: AudioChunk) -> None:
        if not self._device_ok:
            if not self._warned_down:
                self._warned_down = True
                log.warning("audio output %r is unavailable: dropping playback until it is back", self.spec)
            return
        super().write(chunk)

    async def aclose(self) -> None:
        await super().aclose()
        self._keeper.closing = True
        self._keeper.poke()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10.0)
            except asyncio.TimeoutError:
                log.warning("output device did not close within 10 s; abandoning it")

    def _lost(self, detail: str) -> None:
        self._device_ok = False
        self._up.clear()
        self._bus.publish(DeviceLostEvent(detail, kind="output", device=self.spec))
        self.stop()

    def _restored(self, detail: str) -> None:
        self._bus.publish(DeviceRestoredEvent(detail, kind="output", device=self.spec))

    def _adopt(self, rate_hz: int) -> None:
        """On the loop, once callbacks flow: switch to the device rate (only between streams)."""
        if rate_hz != self.rate_hz:
            self.stop()
            self._set_rate(rate_hz, self._buffer_ms)
        log.info("audio output %r playing at %d Hz", self.spec, rate_hz)
        self._device_ok, self._warned_down = True, False
        self._up.set()

    def _make_callback(self, rate_hz: int, channels: int) -> Any:
        loop = self._loop
        assert loop is not None
        keeper = self._keeper
        adopted = False
        first = 0.0
        echo_ref = self._echo_ref
        clock = devices.StreamClock("output")
        if echo_ref is not None:
            echo_ref.open(rate_hz)

        def callback(_in: bytes | None, frame_count: int, times: Any, _status: int) -> tuple[bytes, int]:
            nonlocal adopted, first
            keeper.heartbeat()
            now = time.monotonic()
            first = first or now
            if not adopted and now - first >= STEADY_S:  # past the priming burst and the pause after it
                adopted = True
                loop.call_soon_threadsafe(self._adopt, rate_hz)
            pcm = self._take(frame_count, rate_hz)[0]
            pcm += bytes(frame_count * SAMPLE_WIDTH - len(pcm))
            if echo_ref is not None:  # the reference tap: exactly what goes to the device, silence included
                echo_ref.push(pcm, clock.block_time(times, now))
            if channels > 1:
                pcm = np.repeat(np.frombuffer(pcm, "<i2"), channels).tobytes()
            return pcm, pyaudio.paContinue

        return callback
