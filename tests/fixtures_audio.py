"""Fixtures for the audio rig: a private headless PulseAudio (scripts/pulse-rig) that real PyAudio talks to.

"mic" is a null sink: tests play speech into it and the daemon captures its monitor (ALSA device hark_mic,
also the default source). "speaker" is a null sink the daemon plays into; tests record its monitor.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
RIG = ROOT / "scripts" / "pulse-rig"
RIG_RATE_HZ = 16_000
NULL_SINK_ARGS = {
    "mic": "sink_name=mic rate=16000 channels=1 sink_properties=device.description=hark-mic",
    "speaker": "sink_name=speaker rate=16000 channels=1 sink_properties=device.description=hark-speaker",
}


class Recording:
    """A parecord of the speaker monitor running in the background; `stop()` returns its samples (int16)."""

    def __init__(self, rig: PulseRig, path: Path, device: str = "speaker.monitor") -> None:
        self.path = path
        self._fh = path.open("wb")
        self._proc = subprocess.Popen(
            [
                "parecord",
                f"--device={device}",
                "--raw",
                "--format=s16le",
                f"--rate={RIG_RATE_HZ}",
                "--channels=1",
                "--latency-msec=20",
            ],
            stdout=self._fh,
            stderr=subprocess.PIPE,
            env=rig.env,
        )

    def recorded_s(self) -> float:
        return self.path.stat().st_size / (RIG_RATE_HZ * 2)

    async def started(self, timeout_s: float = 10.0) -> None:
        """Wait until parecord really captures (its first bytes reached the file): a condition, not a warm-up
        sleep. The monitor of a null sink delivers silence continuously, so bytes flow at once when it runs."""
        await self.more(0.02, timeout_s)

    async def more(self, seconds: float, timeout_s: float = 10.0) -> None:
        """Wait until `seconds` more audio were recorded from now on: the tail of what was just played is in."""
        want = self.recorded_s() + seconds
        deadline = time.monotonic() + timeout_s
        while self.recorded_s() < want:
            if self._proc.poll() is not None or time.monotonic() > deadline:
                err = self._proc.stderr.read().decode() if self._proc.stderr and self._proc.poll() is not None else ""
                raise AssertionError(f"parecord recorded {self.recorded_s():.2f} s, wanted {want:.2f} s {err}")
            await asyncio.sleep(0.01)

    def stop(self) -> np.ndarray:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._fh.close()
        raw = self.path.read_bytes()
        return np.frombuffer(raw[: len(raw) // 2 * 2], "<i2")


@dataclass(frozen=True)
class PulseRig:
    dir: Path
    env: dict[str, str]

    def pactl(self, *args: str, timeout_s: float = 10.0) -> str:
        out = subprocess.run(
            ["pactl", *args], env=self.env, capture_output=True, text=True, timeout=timeout_s, check=True
        )
        return out.stdout

    def play_into_mic(self, wav: Path, timeout_s: float = 60.0) -> None:
        """Blocking: play a WAV into the mic sink (what the daemon hears), until it has finished."""
        subprocess.run(["paplay", "--device=mic", str(wav)], env=self.env, check=True, timeout=timeout_s)

    def start_play_into_mic(self, wav: Path) -> subprocess.Popen[bytes]:
        """Non-blocking variant; wait on the returned process with a timeout."""
        return subprocess.Popen(["paplay", "--device=mic", str(wav)], env=self.env)

    def record_speaker(self, path: Path) -> Recording:
        """Start recording what the daemon plays; call `.stop()` (bounded) for the int16 samples."""
        return Recording(self, path)

    def record_speaker_for(self, path: Path, seconds: float) -> np.ndarray:
        rec = self.record_speaker(path)
        time.sleep(seconds)
        return rec.stop()

    def echo_path(self, latency_ms: int = 50, volume: str = "130%") -> None:
        """Opt-in: feed what is played on "speaker" back into "mic", `latency_ms` late, at `volume` (130 %
        puts a Piper answer at volume 100 about 6 dB above espeak-ng speech played into the mic). Remove it
        with `no_echo_path()`; tests that load it must do so in a `finally`."""
        subprocess.run(
            [str(RIG), "echo", str(self.dir), str(latency_ms), volume],
            env=self.env,
            check=True,
            timeout=30,
            capture_output=True,
        )

    def no_echo_path(self) -> None:
        subprocess.run([str(RIG), "noecho", str(self.dir)], env=self.env, check=True, timeout=30, capture_output=True)

    def capture_streams(self) -> int:
        """How many clients are capturing from any source (0 = nobody holds a microphone open)."""
        lines = self.pactl("list", "short", "source-outputs").splitlines()
        return len([ln for ln in lines if ln.strip()])

    def mic_streams(self) -> int:
        """How many clients capture the mic (mic.monitor) itself; a recording of the speaker does not count."""
        sources = [ln.split("\t") for ln in self.pactl("list", "short", "sources").splitlines()]
        mic = next((f[0] for f in sources if len(f) > 1 and f[1] == "mic.monitor"), None)
        outputs = [ln.split("\t") for ln in self.pactl("list", "short", "source-outputs").splitlines()]
        return len([f for f in outputs if len(f) > 1 and f[1] == mic])  # index, source, client, ...

    async def mic_opened(self, timeout_s: float = 30.0) -> None:
        """Wait until the daemon holds the mic open (a condition, not a warm-up sleep). Capture then starts
        ~275 ms later, so the clip played next should begin with ≥ 1 s of silence."""
        deadline = time.monotonic() + timeout_s
        while self.mic_streams() == 0:
            assert time.monotonic() < deadline, f"nobody opened the mic within {timeout_s} s"
            await asyncio.sleep(0.05)

    def unplug(self, sinks: tuple[str, ...] = ("mic", "speaker")) -> None:
        """Pull the "sound card": unload the null sinks. Both by default, because with only "mic" gone
        PulseAudio moves the capture stream to speaker.monitor and nothing looks lost to a client."""
        for line in self.pactl("list", "short", "modules").splitlines():
            fields = line.split("\t")
            is_null_sink = len(fields) >= 3 and fields[1] == "module-null-sink"
            if is_null_sink and any(f"sink_name={name}" in fields[2] for name in sinks):
                self.pactl("unload-module", fields[0])

    def replug(self, sinks: tuple[str, ...] = ("mic", "speaker")) -> None:
        """Plug it back: load the null sinks again and restore the defaults."""
        present = self.pactl("list", "short", "sinks")
        for name in sinks:
            if f"\t{name}\t" not in present:
                self.pactl("load-module", "module-null-sink", *NULL_SINK_ARGS[name].split())
        self.pactl("set-default-source", "mic.monitor")
        self.pactl("set-default-sink", "speaker")


def _rig_env(output: str) -> dict[str, str]:
    env = {}
    for line in output.splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value
    return env


@pytest.fixture(scope="session")
def pulse_rig() -> Iterator[PulseRig]:
    """A private PulseAudio for the whole session; PyAudio in this process is pointed at it."""
    for tool in ("pulseaudio", "pactl", "paplay", "parecord"):
        if shutil.which(tool) is None:
            pytest.fail(
                f"{tool} is not installed: run the README's test command, which installs pulseaudio, "
                "pulseaudio-utils, libasound2-plugins and portaudio19-dev",
                pytrace=False,
            )
    rig_dir = Path(tempfile.mkdtemp(prefix="hark-pulse-"))  # short: unix socket paths max 107 bytes
    started = subprocess.run([str(RIG), "start", str(rig_dir)], capture_output=True, text=True, timeout=30, check=False)
    if started.returncode != 0:
        pytest.fail(f"scripts/pulse-rig start failed:\n{started.stderr}", pytrace=False)
    exports = _rig_env(started.stdout)
    saved = {k: os.environ.get(k) for k in exports}
    os.environ.update(exports)
    try:
        yield PulseRig(rig_dir, {**os.environ, **exports})
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        subprocess.run([str(RIG), "stop", str(rig_dir)], capture_output=True, timeout=30, check=False)
        shutil.rmtree(rig_dir, ignore_errors=True)


# --- test audio ------------------------------------------------------------------------------------------


def make_speech_wav(path: Path, text: str, rate_hz: int = 16_000, pad_s: float = 1.0) -> Path:
    """Real speech (espeak-ng), resampled by sox to `rate_hz` mono and padded with digital silence."""
    raw = path.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, timeout=60)
    subprocess.run(
        [
            "sox",
            "-D",
            str(raw),
            "-r",
            str(rate_hz),
            "-c",
            "1",
            "-b",
            "16",
            str(path),
            "pad",
            str(pad_s),
            str(pad_s),
        ],
        check=True,
        timeout=60,
    )
    raw.unlink()
    return path


def write_wav(path: Path, samples: np.ndarray, rate_hz: int, channels: int = 1, width: int = 2) -> Path:
    """Write float samples in [-1, 1] (shape (n,) or (n, channels)) as integer PCM of `width` bytes."""
    data = np.asarray(samples, dtype=np.float64)
    if data.ndim == 1:
        data = np.repeat(data[:, None], channels, axis=1)
    full = 2 ** (8 * width - 1) - 1
    ints = np.round(data * full).astype(np.int64).reshape(-1)
    if width == 1:
        raw = (ints + 128).astype(np.uint8).tobytes()
    elif width == 3:
        b = ints.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
        raw = b.tobytes()
    else:
        raw = ints.astype(f"<i{width}").tobytes()
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(channels)
        wf.setsampwidth(width)
        wf.setframerate(rate_hz)
        wf.writeframes(raw)
    return path


def tone(freq_hz: float, seconds: float, rate_hz: int, level: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return level * np.sin(2 * np.pi * freq_hz * t)


def rms(samples: np.ndarray) -> float:
    x = np.asarray(samples, dtype=np.float64)
    return float(np.sqrt(np.mean(x * x))) if len(x) else 0.0


def active_span(samples: np.ndarray, rate_hz: int, threshold: float, window_ms: int = 10) -> tuple[float, float]:
    """(start_s, end_s) of the part whose windowed RMS exceeds `threshold`; (0, 0) if none does."""
    win = rate_hz * window_ms // 1000
    n = len(samples) // win
    if n == 0:
        return 0.0, 0.0
    x = np.asarray(samples[: n * win], dtype=np.float64).reshape(n, win)
    on = np.nonzero(np.sqrt((x * x).mean(axis=1)) > threshold)[0]
    if len(on) == 0:
        return 0.0, 0.0
    return on[0] * window_ms / 1000, (on[-1] + 1) * window_ms / 1000
