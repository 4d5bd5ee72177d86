#!/usr/bin/env python3
"""Benchmark the end-of-turn model: CPU per judgement, added memory, and what it answers on test speech.

    .venv/bin/python scripts/bench_turn.py [--reps 50] [--threads 1 2] [--models DIR] [--no-speech]
        [--thresholds 0.5 0.8] [--daemon-runs 20] [--baseline-runs 6]

Each thread count is measured in a fresh child process, so its RSS belongs to one session only. "RSS added"
is resident memory after loading the model and running it once (onnxruntime allocates its arenas on the first
run) minus resident memory just before, with numpy and onnxruntime already imported: what the daemon pays for
turning the model on. Times are wall-clock per call (time.perf_counter) on 8 s of real speech; features and
inference are timed separately because only inference depends on the thread count. "CPU ms" is process CPU
time (all threads) per judgement, idle gaps included, so threads spinning after a call (onnxruntime's pool,
OpenBLAS) show up there and not in the wall-clock columns.

Then the acceptance table: complete and hesitant requests (tests/listen/turn_speech.py; Piper and espeak-ng,
three speeds each) through the daemon's own TurnDetector, per configuration (the model, and end_silence_ms 300
and 700 without it): how many hesitant requests were cut (the end decided before the true end of speech, known
from the synthesized audio) and how long after the true end the complete ones were decided. Last, the whole
daemon at real-time pace against the test Realtime server: true end of speech → commit and → first answer
sample at the sink (the method of scripts/bench_realtime.py, whose `figures` it reuses).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))  # bench_realtime: its trace figures are reused

MODEL = Path("smart-turn") / "smart-turn-v3.2-cpu.onnx"
FIRST_DELTA_MS = 300
IDLE_S = 0.02
"""A pause after each judgement, as in the daemon: CPU burnt by threads spinning after a call is counted."""


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


# --- end of turn on test speech ------------------------------------------------------------------------------

SENTENCES = (
    "Set a timer for, ten minutes.",
    "Turn on the, kitchen lights.",
    "What is the weather in, Paris?",
    "Play some music by, the Beatles.",
    "Remind me to, call my mother, at six.",
    "Add milk to, my shopping list.",
    "Set an alarm for, seven in the morning.",
    "Turn the volume down to, twenty percent.",
    "How long does it take to, drive to, Boston?",
    "Send a message to, my sister.",
)
"""Each with its mid-sentence pause(s) as commas: the complete request is the sentence without them, the
hesitant one is the sentence as synthesized with them, cut at the commas and re-joined with longer pauses."""
PAUSES_S = (0.4, 0.6, 0.8, 1.0, 1.2)
TURN_VOICES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("Piper ×0.8", "piper", {"length_scale": 0.8}),
    ("Piper ×1.0", "piper", {"length_scale": 1.0}),
    ("Piper ×1.2", "piper", {"length_scale": 1.2}),
    ("espeak 130", "espeak", {"speed": 130}),
    ("espeak 160", "espeak", {"speed": 160}),
    ("espeak 200", "espeak", {"speed": 200}),
)


@dataclass(frozen=True)
class Case:
    kind: str  # "complete" | "hesitant"
    voice: str
    text: str
    pauses_s: tuple[float, ...]
    clip: Any  # tests.speech.Clip: spans give the true speech offsets

    @property
    def true_end(self) -> int:
        return int(self.clip.spans[-1].end)


def corpus(models: Path, cache: Path) -> list[Case]:
    """Complete and hesitant requests for every voice: 0.5 s of room before, 2 s after."""
    from tests.listen.turn_speech import complete, hesitant
    from tests.speech import Speech

    speech = Speech(cache, models)
    cases = []
    for voice, engine, kwargs in TURN_VOICES:
        for i, text in enumerate(SENTENCES):
            plain = text.replace(",", "")
            make = speech.piper if engine == "piper" else lambda t, **kw: speech.espeak(t.lower(), **kw)
            cases.append(Case("complete", voice, plain, (), complete(make(plain, **kwargs))))
            pauses = tuple(PAUSES_S[(i + k) % len(PAUSES_S)] for k in range(text.count(",")))
            cases.append(Case("hesitant", voice, text, pauses, hesitant(make(text, **kwargs), list(pauses))))
    return cases


@dataclass(frozen=True)
class Outcome:
    reason: str
    decided_ms: float
    """The decision's input sample minus the true end of speech (negative: decided while still speaking)."""
    judgements: int
    inference_ms: list[float]


async def decide(case: Case, settings: Any, model: Any, executor: Any) -> Outcome:
    """The daemon's own TurnDetector on the clip, armed at its start, fed 30 ms frames."""
    from daemon.listen.turn import TurnDetector
    from daemon.observe.events import SpeechEnded, TurnJudged

    detector = TurnDetector(settings, model)
    detector.start(0)
    events: list[Any] = []
    for frame in case.clip.frames(480):
        events += await detector.process(frame, executor)
        if not detector.armed:
            break
    ended = [e for e in events if isinstance(e, SpeechEnded)]
    if not ended:
        raise RuntimeError(f"{case.voice} {case.text!r}: no end of speech ({events})")
    judged = [e for e in events if isinstance(e, TurnJudged)]
    decided_ms = (ended[0].decided_sample - case.true_end) * 1000 / 16_000
    return Outcome(ended[0].reason, decided_ms, len(judged), [j.inference_ms for j in judged])


def configs(thresholds: list[float]) -> list[tuple[str, dict[str, Any]]]:
    out = [
        (f"Smart Turn, threshold {t}, ask once per pause", {"turn_model": "smart-turn", "turn_threshold": t})
        for t in thresholds
    ]
    out.append(("Smart Turn, threshold 0.5, re-ask every 250 ms", {"turn_model": "smart-turn", "turn_recheck_ms": 250}))
    return out + [
        ("no model, end_silence_ms 300", {"turn_model": "none", "end_silence_ms": 300}),
        ("no model, end_silence_ms 700", {"turn_model": "none", "end_silence_ms": 700}),
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def turn_table(cases: list[Case], models: Path, thresholds: list[float]) -> None:
    """The acceptance table: per configuration, cuts among hesitant requests and the decision delay after
    the true end of the complete ones (counted in samples, so the machine's load does not enter)."""
    from concurrent.futures import ThreadPoolExecutor

    from daemon.config.settings import EndpointSettings
    from daemon.listen.turn import load_turn_model

    executor = ThreadPoolExecutor(max_workers=1)
    loaded = load_turn_model(EndpointSettings(), models / MODEL)
    complete = [c for c in cases if c.kind == "complete"]
    hesitant = [c for c in cases if c.kind == "hesitant"]
    voices = sorted({c.voice for c in cases}, key=[v[0] for v in TURN_VOICES].index)
    print(
        f"\nEnd of turn on {len(complete)} complete and {len(hesitant)} hesitant requests ({len(voices)} voices; "
        f"pauses {', '.join(f'{p * 1000:.0f}' for p in PAUSES_S)} ms). 'decided' = input sample of the decision "
        "− true end of speech (from the synthesized audio), in ms; the wall-clock commit adds the judgement time."
    )
    print(
        "| configuration | hesitant cut | cut per voice | complete: decided median | p90 | ended by model | "
        "judgements per request | inference ms median (p90) |\n|---|---|---|---|---|---|---|---|"
    )
    all_inference: list[float] = []
    for label, overrides in configs(thresholds):
        settings = EndpointSettings(**overrides)
        model = loaded if settings.turn_model == "smart-turn" else None
        out_h = [await decide(c, settings, model, executor) for c in hesitant]
        out_c = [await decide(c, settings, model, executor) for c in complete]
        cut = [c for c, o in zip(hesitant, out_h, strict=True) if o.decided_ms < 0]
        per_voice = " ".join(f"{sum(1 for c in cut if c.voice == v)}" for v in voices)
        delays = [o.decided_ms for o in out_c]
        by_model = sum(1 for o in out_c if o.reason == "model")
        judgements = [o.judgements for o in out_h + out_c]
        inference = [ms for o in out_h + out_c for ms in o.inference_ms]
        all_inference += inference
        inf = f"{statistics.median(inference):.0f} ({pct(inference, 0.9):.0f})" if inference else "–"
        print(
            f"| {label} | {len(cut)}/{len(hesitant)} ({100 * len(cut) / len(hesitant):.0f} %) | {per_voice} | "
            f"{statistics.median(delays):.0f} | {pct(delays, 0.9):.0f} | {by_model}/{len(out_c)} | "
            f"{statistics.mean(judgements):.1f} | {inf} |"
        )
        for c, o in zip(hesitant, out_h, strict=True):
            if o.decided_ms < 0 and settings.turn_model != "none":
                print(f"|   cut: {c.voice} {c.text!r} pauses {c.pauses_s} s | | | | | | | |")
    print(f"(cut per voice: {', '.join(voices)})")
    executor.shutdown()


# --- through the daemon, against the test Realtime server ------------------------------------------------


async def daemon_run(case: Case, wake: Path, models: Path, url: str, endpoint: dict[str, Any]) -> tuple[float, float]:
    """ "Hey Jarvis" + the request at real-time pace: (true end → commit, true end → first answer sample) ms."""
    import asyncio

    from bench_realtime import API_KEY, figures

    from tests.harness import settings_for, start
    from tests.speech import Speech

    clip = Speech.concat([wake, case.clip.pcm[case.clip.spans[0].start : case.true_end]], [1.0, 0.4, 2.0])
    with tempfile.TemporaryDirectory(prefix="hark-bench-turn-") as tmp:
        wav = clip.write(Path(tmp) / "in.wav")
        settings = settings_for(
            Path(tmp), models, wav, audio={"realtime_pace": True}, realtime={"url": url},
            fallback={"load": "lazy"}, endpoint=endpoint,
        )  # fmt: skip
        daemon, run = await start(settings, api_key=API_KEY)
        try:
            t_run = time.monotonic()
            await asyncio.wait_for(daemon.assistant.run(), 60)
        finally:
            await daemon.aclose()
    end = clip.spans[1].end
    rep = figures(run.records, t_run, [end], end)
    played = [r["t"] for r in run.records if r["event"] == "playback_started"]
    return rep.commit_ms[0], (played[0] - (t_run + end / 16_000)) * 1000 if played else float("nan")


async def latency_table(cases: list[Case], models: Path, cache: Path, runs: int, baseline_runs: int) -> None:
    from bench_realtime import API_KEY

    from tests.realtime_server import Reply, ThreadedRealtimeServer, tone
    from tests.speech import Speech

    wake = Speech(cache, models).espeak("Hey Jarvis")
    chosen = [c for c in cases if c.kind == "complete" and c.voice in ("Piper ×1.0", "espeak 160")]
    server = ThreadedRealtimeServer(api_key=API_KEY, chunk_ms=20, first_delta_delay_ms=FIRST_DELTA_MS).start()
    print(
        f"\nThrough the daemon at real-time pace against the test Realtime server (first delta after "
        f"{FIRST_DELTA_MS} ms): true end of speech → input_audio_buffer.commit and → first answer sample at the sink"
    )
    print(
        "| configuration | runs | → commit median | p90 | → first answer sample median | p90 |\n"
        "|---|---|---|---|---|---|"
    )
    try:
        for label, endpoint, n in (
            ("Smart Turn (defaults)", {}, runs),
            ("no model, end_silence_ms 700 (before)", {"turn_model": "none"}, baseline_runs),
        ):
            commit, ear = [], []
            for case in (chosen * (n // max(1, len(chosen)) + 1))[:n]:
                server.server.replies.clear()
                server.server.replies.append(Reply(audio=tone(300)))
                c, e = await daemon_run(case, wake, models, server.url, endpoint)
                commit.append(c)
                ear.append(e)
            if commit:
                print(
                    f"| {label} | {n} | {statistics.median(commit):.0f} | {pct(commit, 0.9):.0f} | "
                    f"{statistics.median(ear):.0f} | {pct(ear, 0.9):.0f} |"
                )
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--no-speech", action="store_true", help="only the CPU and memory table")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5], help="turn_threshold values to compare")
    parser.add_argument("--daemon-runs", type=int, default=20, help="paced daemon runs with the model (0 = none)")
    parser.add_argument("--baseline-runs", type=int, default=6, help="paced daemon runs with turn_model = none")
    parser.add_argument("--only-daemon", action="store_true", help="only the paced daemon runs")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hark-bench-speech")
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
    if args.only_daemon:
        args.cache.mkdir(parents=True, exist_ok=True)
        asyncio.run(
            latency_table(
                corpus(args.models, args.cache), args.models, args.cache, args.daemon_runs, args.baseline_runs
            )
        )
        return 0
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
        args.cache.mkdir(parents=True, exist_ok=True)
        cases = corpus(args.models, args.cache)
        asyncio.run(turn_table(cases, args.models, args.thresholds))
        if args.daemon_runs or args.baseline_runs:
            asyncio.run(latency_table(cases, args.models, args.cache, args.daemon_runs, args.baseline_runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
