"""PortAudio device discovery: list, resolve a config spec to a device, and the PyAudio lifecycle.

PortAudio is process-global and not thread-safe around initialisation, terminate and stream open/close, while
capture and playback each reopen their device from worker threads: every such call goes through `PA_LOCK`.
Note that Pa_Initialize is reference-counted, so a re-scan (`new_pyaudio()`) only sees hot-plugged devices
once no other PyAudio instance is alive; device names that route through ALSA plugins (pulse, dsnoop) are
opened afresh on every open regardless.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

import pyaudio

from daemon.audio.frames import INPUT_RATE_HZ
from daemon.system.backoff import delays

log = logging.getLogger(__name__)

Kind = Literal["input", "output"]

PA_LOCK = threading.RLock()
"""Serialises PortAudio init/terminate/open/close across the capture and playback worker threads."""


class DeviceError(Exception):
    """No usable device for a spec: the message lists the devices that exist."""


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    max_input_channels: int
    max_output_channels: int
    default_rate_hz: int
    supports_16k_input: bool
    host_api: str = ""

    def channels(self, kind: Kind) -> int:
        return self.max_input_channels if kind == "input" else self.max_output_channels


_ALSA_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)
_JACK_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
_silencers: list[Any] = []  # the C callbacks must outlive the libraries' use of them


def silence_native_noise() -> None:
    """Mute the dozens of harmless lines ALSA and JACK print while PortAudio probes devices.

    Done with the libraries' own error-handler hooks rather than by redirecting fd 2, which would also
    swallow our log lines from other threads. Once per process; HARK_PORTAUDIO_NOISE=1 keeps the noise
    (useful when a device will not open).
    """
    if _silencers or os.environ.get("HARK_PORTAUDIO_NOISE") == "1":
        return
    _silencers.append(None)
    hooks = (
        ("asound", "snd_lib_error_set_handler", _ALSA_HANDLER),
        ("jack", "jack_set_error_function", _JACK_HANDLER),
        ("jack", "jack_set_info_function", _JACK_HANDLER),
    )
    for lib_name, func, proto in hooks:
        try:
            setter = getattr(ctypes.CDLL(ctypes.util.find_library(lib_name) or f"lib{lib_name}.so"), func)
        except (OSError, AttributeError) as e:  # library absent: nothing of it to silence
            log.debug("cannot silence %s (%s): %s", lib_name, func, e)
            continue
        callback = proto(lambda *_args: None)
        _silencers.append(callback)
        setter(callback)


def new_pyaudio() -> pyaudio.PyAudio:
    """A fresh PyAudio (re-scans devices when it is the only one alive), without the probing noise."""
    silence_native_noise()
    with PA_LOCK:
        return pyaudio.PyAudio()


def terminate(pa: pyaudio.PyAudio | None) -> None:
    if pa is None:
        return
    with PA_LOCK:
        try:
            pa.terminate()
        except Exception as e:  # terminating must never take the daemon down
            log.debug("PortAudio terminate failed: %s", e)


def _supports(pa: pyaudio.PyAudio, index: int, kind: Kind, rate: int, channels: int) -> bool:
    """PortAudio's own answer (it raises ValueError for "no")."""
    fmt = pyaudio.paInt16
    try:
        if kind == "input":
            return bool(pa.is_format_supported(rate, input_device=index, input_channels=channels, input_format=fmt))
        return bool(pa.is_format_supported(rate, output_device=index, output_channels=channels, output_format=fmt))
    except ValueError:
        return False


def _scan(pa: pyaudio.PyAudio) -> list[DeviceInfo]:
    return [_info(pa, pa.get_device_info_by_index(i)) for i in range(pa.get_device_count())]


def _info(pa: pyaudio.PyAudio, raw: dict[str, Any]) -> DeviceInfo:
    index = int(raw["index"])
    max_in = int(raw["maxInputChannels"])
    supports = max_in > 0 and _supports(pa, index, "input", INPUT_RATE_HZ, 1)
    try:
        api = str(pa.get_host_api_info_by_index(int(raw["hostApi"]))["name"])
    except (OSError, ValueError, KeyError):
        api = ""
    return DeviceInfo(
        index=index,
        name=str(raw["name"]),
        max_input_channels=max_in,
        max_output_channels=int(raw["maxOutputChannels"]),
        default_rate_hz=int(raw["defaultSampleRate"]),
        supports_16k_input=supports,
        host_api=api,
    )


def list_devices(pa: pyaudio.PyAudio | None = None) -> list[DeviceInfo]:
    """Every PortAudio device, input and output (a fresh scan unless `pa` is given)."""
    own = pa is None
    pa = new_pyaudio() if pa is None else pa
    try:
        with PA_LOCK:
            return _scan(pa)
    finally:
        if own:
            terminate(pa)


def _default_index(pa: pyaudio.PyAudio, kind: Kind) -> int | None:
    try:
        with PA_LOCK:
            raw = pa.get_default_input_device_info() if kind == "input" else pa.get_default_output_device_info()
        return int(raw["index"])
    except OSError:
        return None


def _available(devices: list[DeviceInfo], kind: Kind) -> str:
    usable = [d for d in devices if d.channels(kind) > 0]
    if not usable:
        return f"no {kind} devices at all (is the sound card connected and the user in the 'audio' group?)"
    return f"available {kind} devices: " + "; ".join(f"{d.index} {d.name!r}" for d in usable)


def resolve(spec: str, kind: Kind, pa: pyaudio.PyAudio | None = None) -> DeviceInfo:
    """ "default", an index or a case-insensitive name substring → the device. Raises DeviceError."""
    own = pa is None
    pa = new_pyaudio() if pa is None else pa
    try:
        devices = list_devices(pa)
        return _pick(spec.strip(), kind, devices, _default_index(pa, kind))
    finally:
        if own:
            terminate(pa)


def _pick(spec: str, kind: Kind, devices: list[DeviceInfo], default: int | None) -> DeviceInfo:
    usable = [d for d in devices if d.channels(kind) > 0]
    setting = f"audio.{kind} = {spec!r}"
    if spec == "default":
        found = next((d for d in usable if d.index == default), None)
        if found is None:
            raise DeviceError(f"{setting}: PortAudio reports no default {kind} device; {_available(devices, kind)}")
        return found
    if spec.isdigit():
        found = next((d for d in devices if d.index == int(spec)), None)
        if found is None or found.channels(kind) == 0:
            what = "does not exist" if found is None else f"({found.name!r}) has no {kind} channels"
            raise DeviceError(f"{setting}: device {spec} {what}; {_available(devices, kind)}")
        return found
    exact = [d for d in usable if d.name.lower() == spec.lower()]
    matches = exact or [d for d in usable if spec.lower() in d.name.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise DeviceError(f"{setting}: no {kind} device name contains {spec!r}; {_available(devices, kind)}")
    names = ", ".join(f"{d.index} {d.name!r}" for d in matches)
    raise DeviceError(f"{setting}: {len(matches)} {kind} devices match ({names}); use a longer name or the index")


def format_devices(devices: list[DeviceInfo] | None = None) -> str:
    """The `hark devices` listing: inputs then outputs, with index, name, rate and 16 kHz support."""
    devices = list_devices() if devices is None else devices
    lines = []
    kinds: tuple[Kind, ...] = ("input", "output")
    for kind in kinds:
        lines.append(f"{kind.capitalize()} devices (audio.{kind}):")
        usable = [d for d in devices if d.channels(kind) > 0]
        for d in usable:
            native = "16 kHz native" if d.supports_16k_input else f"resampled from {d.default_rate_hz} Hz"
            extra = f", {native}" if kind == "input" else ""
            lines.append(f"  {d.index:>3}  {d.name}  ({d.channels(kind)} ch, default {d.default_rate_hz} Hz{extra})")
        if not usable:
            lines.append("  (none)")
    lines.append('Use "default", an index or part of a name, e.g. audio.input = "USB".')
    return "\n".join(lines)


# --- keeping one stream open ------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpenStream:
    """A running PortAudio stream with the PyAudio that owns it and the format it really runs at."""

    pa: pyaudio.PyAudio
    stream: Any
    device: DeviceInfo
    rate_hz: int
    channels: int


def _choose_format(pa: pyaudio.PyAudio, dev: DeviceInfo, kind: Kind, rates: tuple[int, ...]) -> tuple[int, int]:
    """The first (rate, channels) the device takes: preferred rates mono, its native rate, then stereo."""
    max_ch = max(1, min(2, dev.channels(kind)))
    candidates = [(r, 1) for r in (*rates, dev.default_rate_hz)] + [(dev.default_rate_hz, max_ch)]
    return next(
        ((rate, ch) for rate, ch in candidates if _supports(pa, dev.index, kind, rate, ch)),
        (dev.default_rate_hz, max_ch),  # none claimed: let open() report the real error
    )


def open_stream(spec: str, kind: Kind, rates: tuple[int, ...], block_ms: int, make_callback: Any) -> OpenStream:
    """Blocking (run it in a thread): fresh PyAudio, resolve `spec`, open a callback stream and start it.

    `make_callback(rate_hz, channels)` builds the callback once the real format is known.
    """
    pa = new_pyaudio()
    try:
        with PA_LOCK:
            dev = _pick(spec.strip(), kind, _scan(pa), _default_index(pa, kind))
            rate, channels = _choose_format(pa, dev, kind, rates)
            stream = pa.open(
                format=pyaudio.paInt16,
                channels=channels,
                rate=rate,
                input=kind == "input",
                output=kind == "output",
                input_device_index=dev.index if kind == "input" else None,
                output_device_index=dev.index if kind == "output" else None,
                frames_per_buffer=max(64, rate * block_ms // 1000),
                stream_callback=make_callback(rate, channels),
            )
        return OpenStream(pa, stream, dev, rate, channels)
    except OSError as e:
        terminate(pa)
        raise DeviceError(f"audio.{kind} = {spec!r}: cannot open the device: {e}") from e
    except BaseException:
        terminate(pa)
        raise


CLOCK_CREEP = 1e-4
"""How fast the PortAudio → monotonic clock offset may rise (s per s): a host clock slewed by NTP is followed,
a callback that ran late is not."""


class StreamClock:
    """When a callback's block reaches the speaker (output) or was recorded (input), on time.monotonic().

    PortAudio stamps each callback with its own clock (`current_time`, and the block's DAC/ADC time). The
    offset to time.monotonic() is the smallest `monotonic() - current_time` seen: a callback preempted
    between PortAudio's stamp and our reading of the clock (tens of ms on a busy machine) would otherwise
    move the echo reference's timeline. One per stream; used on its callback thread only.
    """

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self._offset_s: float | None = None
        self._last_s = 0.0

    def block_time(self, time_info: Any, now_s: float) -> float:
        """The block's DAC time (output) or ADC time (input), or `now_s` when the host API gives no times
        (some ALSA plugins) or nonsense; the echo canceller's delay estimate covers the rest."""
        if not isinstance(time_info, dict):
            return now_s
        current = float(time_info.get("current_time") or 0.0)
        key = "output_buffer_dac_time" if self.kind == "output" else "input_buffer_adc_time"
        block = float(time_info.get(key) or 0.0)
        latency = block - current if self.kind == "output" else current - block
        if current <= 0.0 or block <= 0.0 or not 0.0 <= latency <= 1.0:
            return now_s
        seen = now_s - current
        if self._offset_s is None or seen < self._offset_s + (now_s - self._last_s) * CLOCK_CREEP:
            self._offset_s = seen
        else:
            self._offset_s += (now_s - self._last_s) * CLOCK_CREEP
        self._last_s = now_s
        return block + self._offset_s


def close_stream(handle: OpenStream | None) -> None:
    """Blocking: stop and close the stream and release its PyAudio; errors are logged, never raised."""
    if handle is None:
        return
    with PA_LOCK:
        try:
            handle.stream.stop_stream()
        except Exception as e:
            log.debug("stopping %s failed (device already gone?): %s", handle.device.name, e)
        try:
            handle.stream.close()
        except Exception as e:
            log.debug("closing %s failed: %s", handle.device.name, e)
    terminate(handle.pa)


class StreamKeeper:
    """Keeps one PortAudio stream open under a supervisor task: open, watch, close, reopen with backoff.

    A stream counts as failed when PortAudio stops it, when its callback does not start within
    `start_timeout_s` of opening, or when callbacks stop arriving for `stall_s` after that (an unplugged
    USB device often just goes quiet; gaps right after opening are normal: PulseAudio's ALSA plugin
    primes an output stream and then waits up to ~2 s before it runs steadily). `on_lost(detail)` runs
    once per outage, `on_restored(detail)` once when callbacks flow again; both run on the event loop.
    The callback thread calls `heartbeat()`.
    """

    def __init__(
        self,
        kind: Kind,
        open_fn: Any,
        *,
        on_lost: Any,
        on_restored: Any,
        reopen_min_s: float,
        reopen_max_s: float,
        stall_s: float = 1.0,
        start_timeout_s: float = 5.0,
    ) -> None:
        self.kind = kind
        self._open_fn = open_fn
        self._on_lost, self._on_restored = on_lost, on_restored
        self._min_s, self._max_s = reopen_min_s, max(reopen_min_s, reopen_max_s)
        self._stall_s, self._start_timeout_s = stall_s, start_timeout_s
        self.handle: OpenStream | None = None
        self.lost = False
        self.wanted = True
        self.closing = False
        self._last_cb: float | None = None
        self._opened_at = 0.0
        self._changed = asyncio.Event()

    def heartbeat(self) -> None:
        """From the PortAudio thread: a float store is atomic under the GIL, so no lock is needed."""
        self._last_cb = time.monotonic()

    def poke(self) -> None:
        """Wake the supervisor after `wanted` or `closing` changed."""
        self._changed.set()

    async def run(self) -> None:
        schedule = delays(self._min_s, self._max_s)
        delay = next(schedule)
        while not self.closing:
            if not self.wanted:
                await self._wait(None)
                continue
            try:
                self.handle = await asyncio.to_thread(self._open_fn)
            except Exception as e:  # DeviceError, OSError, ValueError from PortAudio: all mean "retry later"
                self._fail(str(e), delay)
                await self._wait(delay)
                delay = next(schedule)
                continue
            self._opened_at, self._last_cb = time.monotonic(), None
            try:
                reason = await self._watch()
            finally:
                handle, self.handle = self.handle, None
                await asyncio.to_thread(close_stream, handle)
            if reason is None:
                continue
            if self._last_cb is not None:  # it had worked: start the backoff over
                schedule = delays(self._min_s, self._max_s)
                delay = next(schedule)
            self._fail(reason, delay)
            await self._wait(delay)
            delay = next(schedule)

    def _fail(self, detail: str, delay: float) -> None:
        if not self.lost:
            self.lost = True
            log.warning(
                "audio %s lost: %s; retrying in %.1f s, then with backoff up to %.0f s "
                "(HARK_PORTAUDIO_NOISE=1 shows PortAudio's own messages)",
                self.kind,
                detail,
                delay,
                self._max_s,
            )
            self._on_lost(detail)
        else:
            log.debug("audio %s still unavailable: %s; next try in %.1f s", self.kind, detail, delay)

    async def _wait(self, timeout: float | None) -> None:
        self._changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def _watch(self) -> str | None:
        """Poll the running stream; returns why it failed, or None when it should just close."""
        assert self.handle is not None
        name = self.handle.device.name
        while self.wanted and not self.closing:
            now, last = time.monotonic(), self._last_cb
            if last is not None and self.lost:
                self.lost = False
                log.warning("audio %s restored: %s at %d Hz", self.kind, name, self.handle.rate_hz)
                self._on_restored(f"{name} at {self.handle.rate_hz} Hz")
            try:
                active = bool(self.handle.stream.is_active())
            except Exception:
                active = False
            if not active:
                return f"{name}: PortAudio stopped the stream (device error or unplugged)"
            if last is None and now - self._opened_at > self._start_timeout_s:
                return f"{name}: no audio within {self._start_timeout_s:.0f} s of opening"
            settled = now - self._opened_at > self._start_timeout_s  # pulse streams pause after priming
            if last is not None and settled and now - last > self._stall_s:
                return f"{name}: no audio for {now - last:.1f} s (device stalled or unplugged)"
            await self._wait(0.1)
        return None
