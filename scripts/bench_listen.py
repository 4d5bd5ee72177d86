#!/usr/bin/env python3
"""Benchmark the listening pipeline against a bare openWakeWord loop on the same audio.

    .venv/bin/python scripts/bench_listen.py [--quick] [--reps 5] [--seconds 60] [--models DIR] [--part bare|gate|all]

Part "bare": the pipeline against openWakeWord's own loop. Part "gate": the pipeline with `wake.gate = "vad"`
against `"off"` on room scenes (silence, room noise, continuous speech, a distant TV, wake speech clean and
at 10 dB SNR): CPU per audio-second side by side, and the wake detections (count and samples) of each.

Each measurement runs in a fresh child process (so peak RSS belongs to one job, not to all of them), and the
two jobs alternate A B A B … so that a busy neighbour on this shared machine slows both alike. CPU time is the
process's (time.process_time: every thread, including the inference worker), counted only around the run, not
the model loading. The pipeline is the real daemon (WAV source at full speed, wake, webrtcvad endpoint, state
machine, trace); the bare loop is `Model.predict` on the same 1280-sample frames with the same ONNX models.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.audio.frames import INPUT_RATE_HZ, WAKE_STEP_SAMPLES  # noqa: E402
from daemon.config.settings import BUILTIN_WAKE_MODELS, Settings  # noqa: E402

ONE_MODEL = ("hey_jarvis",)
THREE_MODELS = ("hey_jarvis", "alexa", "hey_mycroft")
TARGET_RATIO = 1.10
TARGET_RTF = 50.0
WAKE_GAP_S = 2.0


def make_clip(models: Path, cache: Path, seconds: float) -> tuple[Path, int]:
    """Other speech (espeak-ng and Piper) with a few "hey jarvis" in it, at least `seconds` long.

    A wake phrase is followed by silence only: the turn ends on the start-of-speech timeout, so no answer is
    synthesized and the figures stay about listening. Returns the WAV and the number of wake phrases.
    """
    from tests.speech import OTHER_SPEECH, Speech

    speech = Speech(cache, models)
    others = [speech.espeak(s) for s in OTHER_SPEECH] + [speech.piper(s) for s in OTHER_SPEECH]
    wake = speech.espeak("Hey Jarvis")
    parts: list[Path] = []
    while sum(_wav_s(p) + 0.6 for p in parts) < seconds:
        parts.append(others[len(parts) % len(others)])
    wakes = 2 if seconds < 30 else 3
    step = len(parts) // (wakes + 1)
    for i in range(wakes, 0, -1):
        parts.insert(i * step, wake)
    # after a wake phrase, silence longer than the start timeout (1 s): otherwise the next sentence is a request
    silences = [0.6] + [WAKE_GAP_S if p == wake else 0.6 for p in parts]
    clip = speech.concat(parts, silences)
    return speech.wav(clip, f"bench-listen-{round(seconds)}"), wakes


def _wav_s(path: Path) -> float:
    return (path.stat().st_size - 44) / 2 / INPUT_RATE_HZ


# --- the two jobs, each in a child process ------------------------------------------------------------------


def bare_job(wav: Path, models_dir: Path, names: list[str]) -> dict[str, Any]:
    """openWakeWord's own loop: predict() on every 80 ms frame, nothing else."""
    import numpy as np
    from openwakeword.model import Model

    from daemon.config.models import feature_model_paths, wake_model_path
    from tests.speech import read_wav

    pcm, rate = read_wav(wav)
    assert rate == INPUT_RATE_HZ, f"{wav}: expected 16 kHz, got {rate}"
    features = feature_model_paths(models_dir)
    model = Model(
        wakeword_models=[str(wake_model_path(n, models_dir)) for n in names],
        inference_framework="onnx",
        melspec_model_path=str(features.melspectrogram),
        embedding_model_path=str(features.embedding),
    )
    step = WAKE_STEP_SAMPLES
    frames = [pcm[i : i + step] for i in range(0, len(pcm) - step + 1, step)]
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for frame in frames:
        model.predict(np.ascontiguousarray(frame))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"cpu_s": cpu, "wall_s": wall, "audio_s": len(pcm) / INPUT_RATE_HZ}


def pipeline_job(wav: Path, models_dir: Path, names: list[str], gate: str = "off") -> dict[str, Any]:
    """The real daemon on the WAV at full speed; only `assistant.run()` is timed, not `build()`."""
    from tests.harness import settings_for, start

    async def go() -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="hark-bench-listen-") as tmp:
            settings = settings_for(
                Path(tmp),
                models_dir,
                wav,
                wake={"models": names, "gate": gate},
                endpoint={"start_timeout_s": 1.0},
                fallback={"load": "lazy"},
            )
            daemon, run = await start(settings)
            try:
                cpu0, wall0 = time.process_time(), time.perf_counter()
                await asyncio.wait_for(daemon.assistant.run(), 600)
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            finally:
                await daemon.aclose()
        from tests.speech import read_wav

        audio_s = len(read_wav(wav)[0]) / INPUT_RATE_HZ
        resets = sum(1 for r in run.events("state") if r["from"] == "listening")
        wakes = [r["sample"] for r in run.events("wake_detected")]
        return {
            "cpu_s": cpu,
            "wall_s": wall,
            "audio_s": audio_s,
            "wakes": len(wakes),
            "samples": wakes,
            "resets": resets,
        }

    return asyncio.run(go())


def child(kind: str, wav: Path, models_dir: Path, names: list[str], gate: str = "off") -> dict[str, Any]:
    """Run one job in a fresh interpreter and read back its figures (and its own peak RSS)."""
    cmd = [sys.executable, __file__, "--child", kind, "--wav", str(wav), "--models", str(models_dir)]
    cmd += ["--wake", ",".join(names), "--gate", gate]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} job failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# --- the table --------------------------------------------------------------------------------------------------


def measure(wav: Path, models_dir: Path, names: list[str], reps: int) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "pipeline": []}
    for rep in range(reps):
        order = ("bare", "pipeline") if rep % 2 == 0 else ("pipeline", "bare")
        for kind in order:
            runs[kind].append(child(kind, wav, models_dir, names))
        print(f"  {len(names)} model(s): rep {rep + 1}/{reps} done", file=sys.stderr, flush=True)
    return runs


def rows_for(names: list[str], runs: dict[str, list[dict[str, Any]]]) -> list[list[str]]:
    def med(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[kind])

    per = {k: [r["cpu_s"] / r["audio_s"] for r in runs[k]] for k in runs}
    ratios = [p / b for p, b in zip(per["pipeline"], per["bare"], strict=True)]
    ratio = statistics.median(ratios)
    rtf = statistics.median(r["audio_s"] / r["wall_s"] for r in runs["pipeline"])
    rows = []
    for kind in ("bare", "pipeline"):
        rows.append(
            [
                f"{len(names)}",
                kind,
                f"{statistics.median(per[kind]) * 1000:.1f} ms",
                f"{statistics.median(r['audio_s'] / r['wall_s'] for r in runs[kind]):.0f}×",
                f"{med(kind, 'rss_mb'):.0f} MB",
                "",
            ]
        )
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    note = f"≤ {TARGET_RATIO:.2f}×: {verdict} (range {min(ratios):.2f}–{max(ratios):.2f})"
    if len(names) == 1:
        note += f"; RTF ≥ {TARGET_RTF:.0f}×: {'met' if rtf >= TARGET_RTF else 'MISSED'}"
    rows.append([f"{len(names)}", "**pipeline / bare**", f"**{ratio:.2f}×**", "", "", note])
    return rows


# --- the gate: vad vs off on room scenes ----------------------------------------------------------------------

GATE_SILENCE_TARGET = 0.30
GATE_SPEECH_TARGET = 1.05


def gate_scenes(models: Path, cache: Path, seconds: float) -> list[tuple[str, Path, float | None]]:
    """(name, WAV, target ratio gated/ungated or None) for each room the gate is judged in."""
    import numpy as np

    from tests import noise
    from tests.speech import OTHER_SPEECH, Speech, write_wav

    speech = Speech(cache, models)
    n = round(seconds * INPUT_RATE_HZ)
    talk = [speech.espeak(s) for s in OTHER_SPEECH] + [speech.piper(s) for s in OTHER_SPEECH]
    continuous = speech.concat([talk[i % len(talk)] for i in range(int(seconds))], [0.2] * (int(seconds) + 1))
    talk_pcm = np.resize(continuous.pcm, n)
    wake_clip, _ = make_clip(models, cache, seconds)
    from tests.speech import read_wav

    wake_pcm = read_wav(wake_clip)[0]
    level = noise.voiced_level_dbfs(wake_pcm)
    scenes: dict[str, tuple[Any, float | None]] = {
        "silence (digital)": (np.zeros(n, dtype=np.int16), GATE_SILENCE_TARGET),
        "room noise: pink −55 dBFS + fridge hum −58 dBFS": (
            noise.mix(noise.pink_noise(seconds, -55.0, seed=1), noise.hum(seconds, -58.0)),
            GATE_SILENCE_TARGET,
        ),
        "continuous speech": (talk_pcm, GATE_SPEECH_TARGET),
        "distant TV: speech at −50 dBFS over pink −60": (
            noise.mix(noise.at_voiced_level(talk_pcm, -50.0), noise.pink_noise(seconds, -60.0, seed=2)),
            None,
        ),
        "wake speech, clean": (wake_pcm, None),
        "wake speech, 10 dB pink noise": (
            noise.with_snr(wake_pcm, noise.pink_noise(len(wake_pcm) / INPUT_RATE_HZ, -30.0, seed=3), 10.0, level),
            None,
        ),
    }
    out = []
    for i, (name, (pcm, target)) in enumerate(scenes.items()):
        path = cache / f"bench-gate-{i}-{round(seconds)}.wav"
        write_wav(path, pcm)
        out.append((name, path, target))
    return out


def gate_rows(models: Path, cache: Path, seconds: float, reps: int) -> list[list[str]]:
    rows = []
    for name, wav, target in gate_scenes(models, cache, seconds):
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "vad": []}
        for rep in range(reps):
            for gate in ("off", "vad") if rep % 2 == 0 else ("vad", "off"):
                runs[gate].append(child("pipeline", wav, models, list(ONE_MODEL), gate))
        print(f"  gate: {name} done", file=sys.stderr, flush=True)
        per = {g: [r["cpu_s"] / r["audio_s"] for r in runs[g]] for g in runs}
        ratios = [v / o for v, o in zip(per["vad"], per["off"], strict=True)]
        ratio = statistics.median(ratios)
        off_wakes, vad_wakes = runs["off"][0]["samples"], runs["vad"][0]["samples"]
        same = len(off_wakes) == len(vad_wakes) and all(
            abs(a - b) <= WAKE_STEP_SAMPLES for a, b in zip(off_wakes, vad_wakes, strict=True)
        )
        stable = all(r["samples"] == runs[g][0]["samples"] for g in runs for r in runs[g])
        verdict = "" if target is None else f"≤ {target:.2f}×: {'met' if ratio <= target else 'MISSED'}"
        rows.append(
            [
                name,
                f"{statistics.median(per['off']) * 1000:.2f} ms",
                f"{statistics.median(per['vad']) * 1000:.2f} ms",
                f"**{ratio:.2f}×** ({min(ratios):.2f}–{max(ratios):.2f})",
                f"{len(off_wakes)} / {len(vad_wakes)}: {'same' if same else 'DIFFERENT'}"
                + ("" if stable else " (runs vary)"),
                verdict,
            ]
        )
    return rows


def print_gate_table(rows: list[list[str]], seconds: float, reps: int) -> None:
    print(
        f'\nwake.gate = "vad" against "off": the whole daemon, 1 wake model, {seconds:.0f} s scenes, {reps} '
        "interleaved reps, medians (range of the per-rep ratios)\n"
    )
    print("| scene | CPU per audio-s, gate off | gate vad | vad / off | wake detections off / vad | target |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=None, help="interleaved repetitions (default 5, quick 3)")
    parser.add_argument("--seconds", type=float, default=None, help="audio length (default 60, quick 20)")
    parser.add_argument("--quick", action="store_true", help="about 30 s: shorter audio, fewer repetitions")
    parser.add_argument("--models", type=Path, default=Settings().models_dir, help="models directory")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hark-bench-speech")
    parser.add_argument("--child", choices=("bare", "pipeline"), help=argparse.SUPPRESS)
    parser.add_argument("--wav", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--wake", default="hey_jarvis", help=argparse.SUPPRESS)
    parser.add_argument("--gate", choices=("off", "vad"), default="off", help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=("bare", "gate", "all"), default="all", help="which table(s) to print")
    args = parser.parse_args()
    reps = args.reps if args.reps is not None else (3 if args.quick else 5)
    seconds = args.seconds if args.seconds is not None else (20.0 if args.quick else 60.0)
    if reps < 1:
        parser.error(f"--reps {reps}: expected at least 1")
    if not 5 <= seconds <= 600:
        parser.error(f"--seconds {seconds}: expected 5 to 600 seconds of audio")
    if not (args.models / "openwakeword").is_dir():
        parser.error(f"--models {args.models}: no openwakeword/ inside; run scripts/fetch-models first")

    if args.child:
        names = args.wake.split(",")
        unknown = [n for n in names if n not in BUILTIN_WAKE_MODELS]
        if unknown:
            parser.error(f"--wake {args.wake}: unknown {unknown}; expected names from {BUILTIN_WAKE_MODELS}")
        out = (
            bare_job(args.wav, args.models, names)
            if args.child == "bare"
            else pipeline_job(args.wav, args.models, names, args.gate)
        )
        out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(out))
        return 0

    args.cache.mkdir(parents=True, exist_ok=True)
    if args.part != "bare":
        gate_table = gate_rows(args.models, args.cache, seconds, reps)
        if args.part == "gate":
            print_gate_table(gate_table, seconds, reps)
            return 0
    wav, wakes = make_clip(args.models, args.cache, seconds)
    audio_s = _wav_s(wav)
    rows: list[list[str]] = []
    wake_counts: list[int] = []
    for names in (list(ONE_MODEL), list(THREE_MODELS)):
        runs = measure(wav, args.models, names, reps)
        rows += rows_for(names, runs)
        wake_counts += [r["wakes"] for r in runs["pipeline"]]
    print(
        f"{audio_s:.1f} s of speech ({wakes} wake phrases, the rest other speech), {reps} interleaved reps "
        f"per row, medians; wake detections per pipeline run: {sorted(set(wake_counts))}\n"
    )
    print("| wake models | job | CPU per audio-second | real-time factor | peak RSS | target |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.part == "all":
        print_gate_table(gate_table, seconds, reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
