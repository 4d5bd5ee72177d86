#!/usr/bin/env python3
"""Benchmark the end-of-turn model: CPU per judgement, added memory, and what it answers on test speech.

    .venv/bin/python scripts/bench_turn.py [--reps 50] [--threads 1 2] [--models DIR] [--no-speech]

Each thread count is measured in a fresh child process, so its RSS belongs to one session only. "RSS added"
is resident memory after loading the model and running it once (onnxruntime allocates its arenas on the first
run) minus resident memory just before, with numpy and onnxruntime already imported: what the daemon pays for
turning the model on. Times are wall-clock per call (time.perf_counter) on 8 s of real speech; features and
inference are timed separately because only inference depends on the thread count. "CPU ms" is process CPU
time (all threads) per judgement, idle gaps included, so threads spinning after a call (onnxruntime's pool,
OpenBLAS) show up there and not in the wall-clock columns. Latencies from the end of
speech to the commit belong here too once the daemon uses the policy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = Path("smart-turn") / "smart-turn-v3.2-cpu.onnx"
IDLE_S = 0.02
"""A pause after each judgement, as in the daemon: CPU burnt by threads spinning after a call is counted."""
COMPLETE = ("Turn on the kitchen lights.", "Set a timer for ten minutes.", "What is the weather in Paris?")
HESITANT = ("Turn on the, kitchen lights.", "Set a timer for, ten minutes.", "What is the weather in, Paris?")
VOICES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("espeak-ng 130 wpm", {"speed": 130}),
    ("espeak-ng 160 wpm", {"speed": 160}),
    ("espeak-ng 200 wpm", {"speed": 200}),
    ("Piper ×1.0", {"length_scale": 1.0}),
    ("Piper ×0.8 (faster)", {"length_scale": 0.8}),
    ("Piper ×1.2 (slower)", {"length_scale": 1.2}),
)


def rss_kib() -> int:
    """Current (not peak) resident set size of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(model_path: Path, threads: int, reps: int) -> dict[str, float]:
    """Load the model with `threads` intra-op threads and time `reps` judgements of 8 s of speech."""
    import numpy as np
    import onnxruntime  # noqa: F401  (imported before the baseline: the daemon imports it anyway)

    from daemon.listen.smart_turn import WINDOW_SAMPLES, SmartTurn

    rng = np.random.default_rng(0)
    audio = (rng.normal(0, 3000, WINDOW_SAMPLES)).astype(np.int16)
    before = rss_kib()
    start = time.perf_counter()
    model = SmartTurn(model_path, threads=threads)
    load_ms = (time.perf_counter() - start) * 1000
    model.predict(audio)
    added = rss_kib() - before
    features, inference = [], []
    cpu_start = time.process_time()
    for _ in range(reps):
        judgement = model.judge(audio)
        features.append(judgement.features_ms)
        inference.append(judgement.inference_ms)
        time.sleep(IDLE_S)
    cpu_ms = (time.process_time() - cpu_start) * 1000 / reps
    inference.sort()
    return {
        "threads": threads,
        "load_ms": load_ms,
        "rss_added_mb": added / 1024,
        "features_ms": statistics.median(features),
        "inference_ms": statistics.median(inference),
        "inference_p90_ms": inference[int(0.9 * (len(inference) - 1))],
        "cpu_ms": cpu_ms,
    }


def cpu_table(model_path: Path, threads: list[int], reps: int) -> list[dict[str, float]]:
    """One child process per thread count (alternating would not help: each is a few seconds)."""
    rows = []
    for n in threads:
        cmd = [sys.executable, __file__, "--child", str(n), "--reps", str(reps), "--model", str(model_path)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def speech_table(models: Path, cache: Path) -> list[tuple[str, str, float, float]]:
    """(voice, sentence, p(complete sentence), p(cut at its pause)) with 0.5 s before and 200 ms after."""
    from daemon.listen.smart_turn import SmartTurn
    from tests.listen.test_smart_turn import cut_at_pause
    from tests.speech import Speech, read_wav

    speech = Speech(cache, models)
    model = SmartTurn(models / MODEL)
    rows = []
    for voice, kwargs in VOICES:
        for complete, hesitant in zip(COMPLETE, HESITANT, strict=True):
            if voice.startswith("espeak"):
                full, paused = speech.espeak(complete.lower(), **kwargs), speech.espeak(hesitant.lower(), **kwargs)
            else:
                full, paused = speech.piper(complete, **kwargs), speech.piper(hesitant, **kwargs)
            p_full = model.predict(speech.concat([full], [0.5, 0.2]).pcm)
            p_cut = model.predict(speech.concat([cut_at_pause(read_wav(paused)[0])], [0.5, 0.2]).pcm)
            rows.append((voice, complete, p_full, p_cut))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--no-speech", action="store_true", help="only the CPU and memory table")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.model, args.child, args.reps)))
        return 0
    model_path = args.models / MODEL
    if not model_path.is_file():
        print(f"bench_turn: {model_path} is missing: run scripts/fetch-models", file=sys.stderr)
        return 1
    print(f"Smart Turn v3.2 CPU, {args.reps} judgements of 8 s of audio each (median; p90 for inference)")
    print(
        f"{'threads':>7} {'load ms':>8} {'RSS added MB':>12} {'features ms':>11} {'inference ms':>12} "
        f"{'p90 ms':>7} {'CPU ms':>7}"
    )
    for row in cpu_table(model_path, args.threads, args.reps):
        print(
            f"{row['threads']:>7} {row['load_ms']:>8.0f} {row['rss_added_mb']:>12.1f} {row['features_ms']:>11.1f} "
            f"{row['inference_ms']:>12.1f} {row['inference_p90_ms']:>7.1f} {row['cpu_ms']:>7.1f}"
        )
    if not args.no_speech:
        print("\nP(turn complete): the sentence, and the same sentence cut at its mid-sentence pause")
        print(f"{'voice':<20} {'sentence':<30} {'complete':>8} {'cut':>6}")
        with tempfile.TemporaryDirectory(prefix="bench-turn-") as cache:
            for voice, sentence, p_full, p_cut in speech_table(args.models, Path(cache)):
                print(f"{voice:<20} {sentence:<30} {p_full:>8.3f} {p_cut:>6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
