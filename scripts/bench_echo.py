#!/usr/bin/env python3
"""Benchmark echo cancellation: the candidates, the rig, self-wakes and barge-in, on and off side by side.

    .venv/bin/python scripts/bench_echo.py [--sections candidates,rig,server_vad,selfwake] [--minutes 30] [--trials 10]

candidates  Offline: Piper answers through a synthetic room (delay, reverberant tail, echo 6 dB louder than
            the user's speech, a noise floor) into pywebrtc-audio (AEC3), livekit's APM (if importable) and
            Hark's own linear canceller (daemon/audio/linear_echo.py): ERLE in steady state with no
            near-end speech, CPU per audio-second.
rig         The real thing: a private PulseAudio rig with an echo path (module-loopback from the speaker
            monitor into the mic, `--echo-ms` late, at `--echo-volume`), the daemon's PyAudioSink playing
            answers and two PyAudioSources capturing the same mic side by side, one cancelling, one not.
            After one uninterrupted answer (the cancellers learn the echo path, as on the first answer in a
            home), per trial the user says "hey jarvis" somewhere in the answer: ERLE before it, and whether the
            wake detector finds it (cancelled: the daemon's path over an answer — the linear output checked
            against AEC3's — and AEC3's output alone, at the normal threshold; raw: the responding
            threshold and the normal one). Also: the cancellation's CPU per frame, which is all the latency it adds.
server_vad  The whole daemon in `server_vad` mode on the echo rig, `--trials` spoken requests answered with
            several seconds of speech against the test Realtime server (whose VAD cuts a response when it
            hears speech): how many answers the server's VAD cut, and how much microphone audio was sent
            while answers played.
selfwake    Offline, faster than real time: `--minutes` of varied Piper answers (no wake word; some with
            sound-alikes) through the echo path measured on the rig (delay, gain), cancelled and not, into
            the wake detector at the normal threshold: how many times the speaker would wake itself.

Nothing is asserted: this prints a table. Two cores are shared with other work here: the load average is
printed with the figures, and on/off always run side by side on the same audio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.audio.frames import FRAME_SAMPLES, INPUT_RATE_HZ, WAKE_STEP_SAMPLES, AudioChunk, AudioFrame  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RIG = ROOT / "scripts" / "pulse-rig"
ANSWERS = (
    "The weather tomorrow will be sunny with a high of twenty two degrees and light winds from the west.",
    "Your next meeting is at three o'clock with the design team, in the small conference room.",
    "I have set a timer for ten minutes. I will let you know when it is done.",
    "The capital of Australia is Canberra, not Sydney, which surprises a lot of people.",
    "Turning off the lights in the living room and the kitchen now.",
    "It is currently eighteen degrees outside, and it should stay dry until the evening.",
    "Here is a quick recipe: boil the pasta, fry the garlic in olive oil, and toss it with parmesan.",
    "The next train to the city leaves at seven forty five from platform two.",
    "Your package was delivered this morning and left at the front door.",
    "A tablespoon is about fifteen millilitres, and a teaspoon is about five.",
    "The film starts at eight, so you have about an hour and a half.",
    "I added milk, eggs and bread to your shopping list.",
)
SOUND_ALIKES = (
    "Hey Travis, your brother called while you were out.",
    "They say Jarvis was the name of the butler in the old films.",
    "Hey, jar of honey is on the top shelf next to the jam.",
    "Harvest season starts in September, hey, that is early this year.",
    "The service desk says hey, Charles is on his way.",
    "Jarvis Cocker sang with Pulp in the nineties.",
)
NEAR_GAIN_DB = -6.0
"""The user's speech at the mic relative to the echo: the issue asks for an echo ~6 dB louder."""


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} (1/5 min) on {os.cpu_count()} cores"


def rms(x: np.ndarray) -> float:
    v = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(v * v))) if len(v) else 0.0


def erle_db(mic: np.ndarray, out: np.ndarray) -> float:
    return 10 * np.log10(max(rms(mic), 1e-9) ** 2 / max(rms(out), 1e-3) ** 2)


def speech(cache: Path, models: Path) -> Any:
    from tests.speech import Speech

    return Speech(cache, models)


def read16(path: Path) -> np.ndarray:
    from tests.speech import read_wav

    pcm, rate = read_wav(path)
    assert rate == INPUT_RATE_HZ, rate
    return pcm


def room(delay_ms: float, rng: np.random.Generator, tail_ms: float = 150.0) -> np.ndarray:
    """A simple room: the direct path `delay_ms` late, then an exponentially decaying reverberant tail."""
    d = int(delay_ms * INPUT_RATE_HZ / 1000)
    n = int(tail_ms * INPUT_RATE_HZ / 1000)
    ir = np.zeros(d + n, dtype=np.float64)
    ir[d] = 1.0
    ir[d:] += 0.3 * rng.standard_normal(n) * np.exp(-np.arange(n) / (n / 5))
    return ir


def active_rms(x: np.ndarray) -> float:
    v = np.abs(np.asarray(x, dtype=np.float64))
    return rms(v[v > 0.05 * v.max()]) if v.max() > 0 else 0.0


# --- candidates ------------------------------------------------------------------------------------------


def run_pywebrtc(mic: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, float]:
    from pywebrtc_audio import EchoCanceller

    aec = EchoCanceller(sample_rate=INPUT_RATE_HZ, num_channels=1)
    out = np.zeros_like(mic)
    t0 = time.process_time()
    for i in range(0, len(mic) - 159, 160):
        out[i : i + 160] = aec.process(mic[i : i + 160], far[i : i + 160])
    return out, time.process_time() - t0


def run_linear(mic: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, float]:
    from daemon.audio.linear_echo import LinearEchoCanceller

    lin = LinearEchoCanceller(INPUT_RATE_HZ, 160)
    out = np.zeros_like(mic)
    t0 = time.process_time()
    for i in range(0, len(mic) - 159, 160):
        out[i : i + 160] = lin.process(mic[i : i + 160], far[i : i + 160], learn=True)
    return out, time.process_time() - t0


def run_livekit(mic: np.ndarray, far: np.ndarray) -> tuple[np.ndarray, float]:
    from livekit import rtc

    apm = rtc.AudioProcessingModule(echo_cancellation=True, high_pass_filter=True)
    out = np.zeros_like(mic)
    t0 = time.process_time()
    for i in range(0, len(mic) - 159, 160):
        apm.process_reverse_stream(rtc.AudioFrame(far[i : i + 160].tobytes(), INPUT_RATE_HZ, 1, 160))
        apm.set_stream_delay_ms(0)
        frame = rtc.AudioFrame(mic[i : i + 160].tobytes(), INPUT_RATE_HZ, 1, 160)
        apm.process_stream(frame)
        out[i : i + 160] = np.frombuffer(bytes(frame.data), dtype=np.int16)
    return out, time.process_time() - t0


def candidates(sp: Any, delays_ms: tuple[int, ...] = (20, 60, 100, 200)) -> list[list[str]]:
    far = np.concatenate([read16(sp.piper(t)) for t in ANSWERS[:4]]).astype(np.float64)
    near = read16(sp.espeak("Hey Jarvis, what time is it")).astype(np.float64)
    rows = []
    for delay in delays_ms:
        rng = np.random.default_rng(delay)
        echo = np.convolve(far, room(delay, rng))[: len(far)]
        echo *= active_rms(near) / 10 ** (NEAR_GAIN_DB / 20) / active_rms(echo)
        mic = echo + 3.0 * rng.standard_normal(len(echo))
        at = int(len(mic) * 0.7)
        mic[at : at + len(near)] += near
        mic16 = np.clip(mic, -32768, 32767).astype(np.int16)
        far16 = far.astype(np.int16)
        steady = slice(3 * INPUT_RATE_HZ, at)
        for name, fn in (
            ("pywebrtc-audio 0.2.0 (AEC3)", run_pywebrtc),
            ("livekit APM (AEC3)", run_livekit),
            ("Hark's linear NLMS (the barge-in path; always learning here)", run_linear),
        ):
            try:
                out, cpu_s = fn(mic16, far16)
            except ImportError as e:
                rows.append([name, f"{delay}", "not installed", str(e), ""])
                continue
            per_s = cpu_s / (len(mic16) / INPUT_RATE_HZ) * 1000
            rows.append([name, f"{delay}", f"{erle_db(mic16[steady], out[steady]):.1f}", f"{per_s:.2f}", ""])
    return rows


# --- the rig ---------------------------------------------------------------------------------------------


def start_rig(tmp: Path) -> Path:
    rig_dir = Path(tempfile.mkdtemp(prefix="hark-echo-"))
    out = subprocess.run([str(RIG), "start", str(rig_dir)], capture_output=True, text=True, timeout=30, check=True)
    for line in out.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        os.environ[key] = value
    return rig_dir


def rig_cmd(cmd: str, rig_dir: Path, *args: str) -> None:
    subprocess.run([str(RIG), cmd, str(rig_dir), *args], check=True, timeout=30, capture_output=True)


class Capture:
    """A PyAudioSource of the rig's mic, its frames collected with their arrival time."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.frames: list[AudioFrame] = []
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async for item in self.source:
            if isinstance(item, AudioFrame):
                self.frames.append(item)

    def pcm(self) -> np.ndarray:
        return np.frombuffer(b"".join(f.pcm for f in self.frames), dtype=np.int16)


async def rig_trials(sp: Any, models: Path, trials: int, echo_ms: int, echo_volume: str) -> dict[str, Any]:
    from daemon.audio.echo import FarEnd
    from daemon.audio.sink import PyAudioSink
    from daemon.audio.source import PyAudioSource
    from daemon.config.settings import WakeSettings
    from daemon.listen.wake import WakeDetector
    from daemon.observe.bus import EventBus

    bus = EventBus()
    far = FarEnd()
    sink = PyAudioSink("default", bus, volume=100, echo_ref=far)
    await sink.start()
    on = Capture(PyAudioSource("default", bus, echo_mode="on", echo_ref=far))
    off = Capture(PyAudioSource("default", bus))
    tasks = [asyncio.create_task(c.run()) for c in (on, off)]
    wake = sp.espeak("Hey Jarvis")
    rig_dir = Path(os.environ["PULSE_SERVER"].removeprefix("unix:")).parent
    env = dict(os.environ)
    out: dict[str, Any] = {"erle_on": [], "erle_off": [], "trials": []}
    try:
        await asyncio.sleep(1.5)  # both captures running
        await asyncio.to_thread(rig_cmd, "echo", rig_dir, str(echo_ms), echo_volume)
        # Steady state, as in a home: one answer nobody interrupts lets the cancellers learn this echo path
        # (the delay estimate needs a few agreeing seconds); the trials come after it.
        warm = read16(sp.piper(" ".join(ANSWERS[-2:])))
        sink.begin()
        sink.write(AudioChunk(warm.tobytes(), INPUT_RATE_HZ))
        await sink.drain()
        await asyncio.sleep(0.5)
        for trial in range(trials):
            answer = read16(sp.piper(ANSWERS[trial % len(ANSWERS)] + " " + ANSWERS[(trial + 5) % len(ANSWERS)]))
            mark = (len(on.frames), len(off.frames))
            sink.begin()
            sink.write(AudioChunk(answer.tobytes(), INPUT_RATE_HZ))
            t_play = time.monotonic()
            # the user speaks after 3-5 s of answer (AEC has converged by then on a fresh echo path)
            at_s = 3.0 + (trial % 3)
            await asyncio.sleep(at_s)
            await asyncio.to_thread(subprocess.run, ["paplay", "--device=mic", str(wake)], env=env, timeout=30)
            await sink.drain()
            await asyncio.sleep(0.5)
            out["trials"].append((mark, len(on.frames), len(off.frames), at_s, time.monotonic() - t_play))
        await asyncio.to_thread(rig_cmd, "noecho", rig_dir)
    finally:
        for c in (on, off):
            await c.source.aclose()
        for t in tasks:
            t.cancel()
        await sink.aclose()
    det_norm = WakeDetector(WakeSettings(), models)
    detect = {"on@0.5": 0, "aec3-only@0.5": 0, "off@0.5": 0, "off@0.8": 0}
    for (m_on, m_off), end_on, end_off, at_s, _ in out["trials"]:
        for label, cap, lo, hi in (("on", on, m_on, end_on), ("off", off, m_off, end_off)):
            pcm = np.frombuffer(b"".join(f.pcm for f in cap.frames[lo:hi]), dtype=np.int16)
            linear = None
            if label == "on" and all(f.linear is not None for f in cap.frames[lo:hi]):
                linear = np.frombuffer(b"".join(f.linear or b"" for f in cap.frames[lo:hi]), dtype=np.int16)
                out.setdefault("pcm_linear", []).append(linear)
            # ERLE: answer playing, no near speech: from 1.5 s into the answer up to the user's phrase
            a, b = int(1.5 * INPUT_RATE_HZ), int((at_s - 0.1) * INPUT_RATE_HZ)
            seg = pcm[a:b]
            out[f"erle_{label}"].append(seg)
            if linear is not None:
                out.setdefault("erle_linear", []).append(linear[a:b])
            out.setdefault(f"trial_{label}", []).append((rms(seg), active_rms(seg)))
            out.setdefault(f"pcm_{label}", []).append(pcm)
            # "on": the daemon's path over an answer (the linear output, checked against AEC3's);
            # "aec3-only": what the detector heard before the linear canceller was added
            runs = [("on", linear, True), ("aec3-only", None, True)] if label == "on" else [("off", None, False)]
            for name, lin, cancelled in runs:
                for thr in (0.5,) if cancelled else (0.5, 0.8):
                    det_norm.reset()
                    hits = 0
                    for i in range(0, len(pcm) - WAKE_STEP_SAMPLES + 1, WAKE_STEP_SAMPLES):
                        step = slice(i, i + WAKE_STEP_SAMPLES)
                        frame = AudioFrame(pcm[step].tobytes(), i, None if lin is None else lin[step].tobytes())
                        hits += bool(det_norm.process(frame, strict=cancelled or thr > 0.5, echo_cancelled=cancelled))
                    detect[f"{name}@{thr}"] += hits > 0
                    out.setdefault(f"hits_{name}@{thr}", []).append(hits)
    out["detect"] = detect
    return out


def on_rig(trials: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run `trials(*args)` on a private PulseAudio rig, stopped and removed afterwards."""
    rig_dir = start_rig(Path(tempfile.gettempdir()))
    try:
        return asyncio.run(trials(*args))
    finally:
        subprocess.run([str(RIG), "stop", str(rig_dir)], capture_output=True, timeout=30, check=False)
        shutil.rmtree(rig_dir, ignore_errors=True)


def rig(sp: Any, models: Path, trials: int, echo_ms: int, echo_volume: str) -> dict[str, Any]:
    result: dict[str, Any] = on_rig(rig_trials, sp, models, trials, echo_ms, echo_volume)
    return result


# --- server_vad ------------------------------------------------------------------------------------------


async def vad_answers(sp: Any, models: Path, answers: int, echo_ms: int, echo_volume: str) -> dict[str, int]:
    """The whole daemon with `realtime.turn_detection = "server_vad"` on the echo rig, against the test
    Realtime server (its energy VAD interrupts a response when it hears speech, as the real one does):
    `answers` spoken requests, each answered with several seconds of Piper speech that comes back into the
    mic louder than a user. Counts the responses the server cut because it heard speech."""
    from daemon.audio.resample import StreamResampler
    from daemon.core.assistant import cancel_task
    from tests.fixtures_realtime import API_KEY
    from tests.harness import settings_for, start, wait_for_event
    from tests.realtime_server import Reply, ThreadedRealtimeServer

    answer16 = np.concatenate([read16(sp.piper(t)) for t in ANSWERS[:2]])
    answer24 = StreamResampler(INPUT_RATE_HZ, 24_000).process(answer16.tobytes())
    server = ThreadedRealtimeServer(api_key=API_KEY).start()
    server.server.default_reply = Reply(transcript=" ".join(ANSWERS[:2]), audio=answer24)
    request = sp.wav(sp.concat([sp.espeak("Hey Jarvis"), sp.espeak("Tell me about tomorrow")], [0.5, 0.4, 1.5]), "vad")
    rig_dir = Path(os.environ["PULSE_SERVER"].removeprefix("unix:")).parent
    out = {"answers": 0, "cut by the server's VAD": 0, "appended while answering (bytes)": 0}
    with tempfile.TemporaryDirectory(prefix="hark-bench-vad-") as tmp:
        settings = settings_for(
            Path(tmp), models, None, audio={"input": "default", "output": "default", "echo_cancel": "on"},
            realtime={"url": server.url, "turn_detection": "server_vad"}, conversation={"followup_seconds": 0},
        )  # fmt: skip
        daemon, run = await start(settings, api_key=API_KEY)
        task = asyncio.create_task(daemon.assistant.run())
        await asyncio.to_thread(rig_cmd, "echo", rig_dir, str(echo_ms), echo_volume)
        try:
            await asyncio.sleep(1.5)
            for n in range(1, answers + 1):
                await asyncio.to_thread(subprocess.run, ["paplay", "--device=mic", str(request)], timeout=30)
                await wait_for_event(run, "playback_started", timeout_s=30, count=n)
                appended = len(server.server.record.audio)
                await wait_for_event(run, "state", timeout_s=60, count=n, to="idle")
                out["appended while answering (bytes)"] += len(server.server.record.audio) - appended
        finally:
            await asyncio.to_thread(rig_cmd, "noecho", rig_dir)
            await cancel_task(task)
            await daemon.aclose()
            server.stop()
    responses = server.server.record.responses
    out["answers"] = len(responses)
    out["cut by the server's VAD"] = sum(1 for r in responses if r.get("status") == "cancelled")
    return out


def serve_vad(sp: Any, models: Path, answers: int, echo_ms: int, echo_volume: str) -> dict[str, int]:
    result: dict[str, int] = on_rig(vad_answers, sp, models, answers, echo_ms, echo_volume)
    return result


# --- self-wakes ------------------------------------------------------------------------------------------


def answers_audio(sp: Any, minutes: float, rng: np.random.Generator) -> np.ndarray:
    """`minutes` of varied answers: every sentence in three renderings (Piper's own prosody noise, three
    speaking rates), shuffled, with 0.3-1.5 s pauses, each at a level between -6 and 0 dB."""
    clips = []
    for text in ANSWERS + SOUND_ALIKES:
        for scale in (0.9, 1.0, 1.15):
            clips.append(read16(sp.piper(text, length_scale=scale, noise_scale=None, noise_w_scale=None)))
    parts: list[np.ndarray] = []
    total = 0
    while total < minutes * 60 * INPUT_RATE_HZ:
        clip = clips[int(rng.integers(len(clips)))].astype(np.float64) * 10 ** (rng.uniform(-6, 0) / 20)
        gap = np.zeros(int(rng.uniform(0.3, 1.5) * INPUT_RATE_HZ))
        parts += [clip, gap]
        total += len(clip) + len(gap)
    return np.concatenate(parts)


def count_wakes(
    models: Path, pcm: np.ndarray, strict: bool, echo_cancelled: bool, linear: np.ndarray | None = None
) -> int:
    from daemon.config.settings import WakeSettings
    from daemon.listen.wake import WakeDetector

    det = WakeDetector(WakeSettings(), models)
    hits = 0
    for i in range(0, len(pcm) - WAKE_STEP_SAMPLES + 1, WAKE_STEP_SAMPLES):
        step = slice(i, i + WAKE_STEP_SAMPLES)
        frame = AudioFrame(pcm[step].tobytes(), i, None if linear is None else linear[step].tobytes())
        hits += len(det.process(frame, strict=strict, echo_cancelled=echo_cancelled))
    return hits


def selfwake(sp: Any, models: Path, minutes: float, delay_ms: float) -> list[list[str]]:
    """The answers through a room (`delay_ms`, reverberant tail, a noise floor) into the mic, cancelled by
    the daemon's own EchoCanceller (reference through FarEnd with a deliberately wrong clock: 120 ms off,
    which its delay estimate must find), and raw. No near-end speech at all."""
    from daemon.audio.echo import EchoCanceller, FarEnd

    rng = np.random.default_rng(14)
    far = answers_audio(sp, minutes, rng)
    mic = np.convolve(far, room(delay_ms, rng))[: len(far)] + 3.0 * rng.standard_normal(len(far))
    mic16 = np.clip(mic, -32768, 32767).astype(np.int16)
    far16 = np.clip(far, -32768, 32767).astype(np.int16)
    ref = FarEnd(ring_s=8.0)
    ref.open(INPUT_RATE_HZ)
    aec = EchoCanceller(ref)
    aec.start_stream()
    out = np.empty_like(mic16)
    linear = np.zeros_like(mic16)
    block = FRAME_SAMPLES
    t_play0 = 1000.0  # a virtual clock: sample n of the reference plays at t_play0 + n / rate
    cpu = 0.0
    per_frame: list[float] = []
    for i in range(0, len(mic16) - block + 1, block):
        ref.push(far16[i : i + block].tobytes(), t_play0 + i / INPUT_RATE_HZ)
        aec.captured(i + block, t_play0 + (i + block) / INPUT_RATE_HZ - 0.120)
        t0 = time.process_time()
        w0 = time.perf_counter()
        cleaned = aec.process(mic16[i : i + block].tobytes(), i)
        out[i : i + block] = np.frombuffer(cleaned.pcm, dtype=np.int16)
        if cleaned.linear is not None:
            linear[i : i + block] = np.frombuffer(cleaned.linear, dtype=np.int16)
        per_frame.append(time.perf_counter() - w0)
        cpu += time.process_time() - t0
    n = len(mic16) // block * block
    audio_s = n / INPUT_RATE_HZ
    steady = slice(30 * INPUT_RATE_HZ, n)
    rows = [
        ["answers played (min)", f"{audio_s / 60:.1f}", ""],
        ["ERLE after 30 s, whole run (dB)", f"{erle_db(mic16[steady], out[steady]):.1f}", ""],
        ["canceller CPU (ms per audio-s)", f"{cpu / audio_s * 1000:.2f}", "includes the delay estimate"],
        [
            "latency added per 30 ms frame (ms, p50 / p99 / max)",
            " / ".join(f"{np.percentile(per_frame, q) * 1000:.2f}" for q in (50, 99, 100)),
            "wall time of process(); no buffering",
        ],
        ["ERLE of the linear canceller alone, after 30 s (dB)", f"{erle_db(mic16[steady], linear[steady]):.1f}", ""],
        [
            "self-wakes, cancelled, wake.threshold 0.5",
            f"{count_wakes(models, out[:n], True, True, linear[:n])}",
            "the daemon's path: linear output, checked against AEC3's",
        ],
        ["self-wakes, AEC3 output only, wake.threshold 0.5", f"{count_wakes(models, out[:n], True, True)}", ""],
        [
            "self-wakes, linear output, no AEC3 check, wake.threshold 0.5",
            f"{count_wakes(models, linear[:n], True, True)}",
            "what the check prevents",
        ],
        ["self-wakes, raw, wake.threshold 0.5", f"{count_wakes(models, mic16[:n], False, False)}", ""],
        ["self-wakes, raw, responding_threshold 0.8", f"{count_wakes(models, mic16[:n], True, False)}", "today"],
    ]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="candidates,rig,server_vad,selfwake")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--echo-ms", type=int, default=50)
    parser.add_argument("--echo-volume", default="100%")
    parser.add_argument("--models", type=Path, default=Path(os.environ.get("HARK_MODELS_DIR", ROOT / "models")))
    parser.add_argument("--dump", type=Path, help="write each trial's captures (cancelled and raw) here")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hark-bench-echo")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    sp = speech(args.cache, args.models)
    sections = args.sections.split(",")
    print(load())
    if "candidates" in sections:
        print("| candidate | echo delay ms | ERLE dB | CPU ms per audio-s |  |")
        for row in candidates(sp):
            print("| " + " | ".join(row) + " |")
    if "rig" in sections:
        res = rig(sp, args.models, args.trials, args.echo_ms, args.echo_volume)
        on, off = np.concatenate(res["erle_on"]), np.concatenate(res["erle_off"])
        print(f"rig ERLE (off/on RMS): {erle_db(off, on):.1f} dB  off rms {rms(off):.0f}  on rms {rms(on):.0f}")
        print(f"barge-in detections of {args.trials}: {res['detect']}")
        if args.dump:
            from tests.speech import write_wav

            args.dump.mkdir(parents=True, exist_ok=True)
            for label in ("on", "off"):
                for i, pcm in enumerate(res[f"pcm_{label}"]):
                    write_wav(args.dump / f"trial{i}-{label}.wav", pcm)
        if res.get("erle_linear"):
            print(f"rig ERLE of the linear canceller alone: {erle_db(off, np.concatenate(res['erle_linear'])):.1f} dB")
        near = active_rms(read16(sp.espeak("Hey Jarvis")))
        for i, ((off_rms, off_act), (on_rms, _)) in enumerate(zip(res["trial_off"], res["trial_on"], strict=True)):
            print(
                f"trial {i}: ERLE {20 * np.log10(off_rms / max(on_rms, 1e-3)):.1f} dB, echo/near "
                f"{20 * np.log10(off_act / near):+.1f} dB, hits on {res['hits_on@0.5'][i]} "
                f"aec3-only {res['hits_aec3-only@0.5'][i]} off@0.5 {res['hits_off@0.5'][i]} "
                f"off@0.8 {res['hits_off@0.8'][i]}"
            )
    if "server_vad" in sections:
        res_vad = serve_vad(sp, args.models, args.trials, args.echo_ms, args.echo_volume)
        print("| server_vad on the echo rig (echo_cancel on) | value |\n|---|---|")
        for key, value in res_vad.items():
            print(f"| {key} | {value} |")
    if "selfwake" in sections:
        print("| self-wake run | value | note |")
        for row in selfwake(sp, args.models, args.minutes, args.echo_ms):
            print("| " + " | ".join(row) + " |")
    print(load())
    return 0


if __name__ == "__main__":
    sys.exit(main())
