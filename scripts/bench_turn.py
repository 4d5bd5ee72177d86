#!/usr/bin/env python3
"""Benchmark the end-of-turn model: CPU per judgement, added memory, and what it answers on test speech.

    .venv/bin/python scripts/bench_turn.py [--reps 50] [--threads 1 2] [--models DIR] [--no-speech] [--no-cpu]
        [--thresholds 0.5 0.8] [--end-probabilities 0.05] [--configs LABEL ...] [--distributions]
        [--daemon-runs 20] [--baseline-runs 6]

Each thread count is measured in a fresh child process, so its RSS belongs to one session only. "RSS added"
is resident memory after loading the model and running it once (onnxruntime allocates its arenas on the first
run) minus resident memory just before, with numpy and onnxruntime already imported: what the daemon pays for
turning the model on. Times are wall-clock per call (time.perf_counter) on 8 s of real speech; features and
inference are timed separately because only inference depends on the thread count. "CPU ms" is process CPU
time (all threads) per judgement, idle gaps included, so threads spinning after a call (onnxruntime's pool,
OpenBLAS) show up there and not in the wall-clock columns.

Then the acceptance table: complete and hesitant requests (tests/listen/turn_speech.py; Piper and espeak-ng,
three speeds each) through the daemon's own TurnDetector, per configuration (the model with and without the
words, and end_silence_ms 300 and 700 without it): how many hesitant requests were cut (the end decided before
the true end of speech, known from the synthesized audio), at commas (the acceptance set) and paused in fluent
speech (the same requests, the same pauses: tests/listen/turn_speech.py says why both), and how long after the
true end the complete ones were decided (`--configs` runs some rows only: two processes can share the rows);
then what the word recognizer costs (real-time factor, memory). `--distributions` first prints what the model
answers at each length of silence, for complete requests and for mid-sentence pauses (why a threshold alone
cannot separate them). Last, the whole daemon at real-time pace against the test Realtime
server: true end of speech → commit and → first answer sample at the sink (the method of
scripts/bench_realtime.py, whose `figures` it reuses).
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


def measure_words() -> dict[str, float]:
    """Load the word recognizer (PocketSphinx, en-US language model) and decode 8 s of noise through it."""
    import numpy as np

    from daemon.config.settings import EndpointSettings
    from daemon.listen.turn import load_turn_words

    audio = np.random.default_rng(0).normal(0, 3000, 8 * 16_000).astype(np.int16).tobytes()
    before = rss_kib()
    start = time.perf_counter()
    words = load_turn_words(EndpointSettings())
    if words is None:
        raise RuntimeError("the word recognizer did not load (see the warning above)")
    load_ms = (time.perf_counter() - start) * 1000
    added = rss_kib() - before
    words.restart()
    for at in range(0, len(audio), 960):
        words.feed(audio[at : at + 960])
    words.last_word().result()
    words.close()
    return {"load_ms": load_ms, "rss_added_mb": added / 1024, "rtf": words.decode_s / words.audio_s}


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
"""Each with its mid-sentence pause(s) as commas: the complete request is the sentence without them; the
hesitant one is the sentence as synthesized with them, cut at the commas and re-joined with longer pauses (the
acceptance set); the fluent-cut one is the sentence synthesized without them, the same pauses inserted after
the same words (tests/listen/turn_speech.py: why both)."""
AFTER_A_CONTENT_WORD = (
    "Remind me to call, my mother at six.",
    "Set the bedroom, lights to fifty percent.",
    "Turn off the living, room lights.",
    "Play some relaxing, music in the kitchen.",
    "Dim the dining, room lights.",
    "How far is the nearest, gas station?",
    "Set a reminder to water, the plants tomorrow.",
    "Start the washing, machine.",
    "Read me the latest, news headlines.",
    "Turn the hallway, light off.",
)
"""A second set, reported beside the first (never instead of it): the pause comes after a content word, where
the words cannot tell that the request goes on ("turn off the living, … room lights"), only the tone can."""
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
    kind: str  # "complete" | "hesitant" (paused at commas) | "fluent" (paused in fluent speech)
    extra: bool  # from AFTER_A_CONTENT_WORD (reported in its own columns; the acceptance set is SENTENCES)
    voice: str
    text: str
    pauses_s: tuple[float, ...]
    clip: Any  # tests.speech.Clip: spans give the true speech offsets

    @property
    def true_end(self) -> int:
        return int(self.clip.spans[-1].end)


def corpus(models: Path, cache: Path) -> list[Case]:
    """Complete and hesitant requests for every voice: 0.5 s of room before, 2 s after."""
    from tests.listen.turn_speech import complete, fluent_hesitant, hesitant, word_boundaries
    from tests.speech import Speech, read_wav

    speech = Speech(cache, models)
    cases, fluent = [], []
    for voice, engine, kwargs in TURN_VOICES:
        make = speech.piper if engine == "piper" else lambda t, **kw: speech.espeak(t.lower(), **kw)
        for extra, sentences in ((False, SENTENCES), (True, AFTER_A_CONTENT_WORD)):
            for i, text in enumerate(sentences):
                plain = text.replace(",", "")
                cases.append(Case("complete", extra, voice, plain, (), complete(make(plain, **kwargs))))
                pauses = tuple(PAUSES_S[(i + k) % len(PAUSES_S)] for k in range(text.count(",")))
                clip = hesitant(make(text, **kwargs), list(pauses))
                cases.append(Case("hesitant", extra, voice, text, pauses, clip))
                if extra:
                    continue  # the fluent version of the acceptance set only (the table is long enough to run)
                spoken = plain if engine == "piper" else plain.lower()
                pcm = read_wav(make(plain, **kwargs))[0]
                after = [k for k, w in enumerate(text.split()) if w.endswith(",")]
                cuts = word_boundaries(engine, pcm, spoken, after, **kwargs)
                fluent.append(Case("fluent", extra, voice, text, pauses, fluent_hesitant(pcm, cuts, list(pauses))))
    # Last: the word recognizer's channel estimate carries from one request to the next, so what it heard
    # before changes its answers a little; heard after the others, the fluent requests leave them as they were.
    return cases + fluent


@dataclass(frozen=True)
class Outcome:
    reason: str
    decided_ms: float
    """The decision's input sample minus the true end of speech (negative: decided while still speaking)."""
    judgements: int
    inference_ms: list[float]


async def decide(case: Case, settings: Any, model: Any, words: Any, executor: Any) -> Outcome:
    """The daemon's own TurnDetector on the clip, armed at its start, fed 30 ms frames."""
    from daemon.listen.turn import TurnDetector
    from daemon.observe.events import SpeechEnded, TurnJudged

    detector = TurnDetector(settings, model, words)
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


def configs(
    thresholds: list[float], end_probabilities: list[float], unlikely_bars: list[float]
) -> list[tuple[str, dict[str, Any]]]:
    """The default first, then the words' variants (the word list alone: before the language model), the model
    alone (before the words), then the silence rule without a model."""
    from daemon.config.settings import EndpointSettings

    default = EndpointSettings()
    e0, b0 = default.turn_min_end_probability, default.turn_unlikely_end_threshold
    out: list[tuple[str, dict[str, Any]]] = [
        (f"Smart Turn + last word + P(end | last 2 words) < {e0} raises the bar to {b0} (default)", {})
    ]
    word_list = {"turn_min_end_probability": 0.0}
    out += [
        (f"Smart Turn + last word, threshold {t}{' (before)' if t == 0.5 else ''}", {**word_list, "turn_threshold": t})
        for t in sorted({0.5, *thresholds})
    ]
    out += [
        (
            f"Smart Turn + last word + P(end | last 2 words) < {e} holds",
            {"turn_min_end_probability": e, "turn_unlikely_end_threshold": 1.0},
        )
        for e in end_probabilities
    ]
    out += [
        (
            f"Smart Turn + last word + P(end | last 2 words) < {e} raises the bar to {b}",
            {"turn_min_end_probability": e, "turn_unlikely_end_threshold": b},
        )
        for e in end_probabilities
        for b in unlikely_bars
        if (e, b) != (e0, b0)
    ]
    out.append(("Smart Turn + last word, re-ask every 120 ms", {**word_list, "turn_recheck_ms": 120}))
    out += [
        (
            f"Smart Turn alone, threshold {t}{' (before)' if t == 0.5 else ''}",
            {"turn_words": "none", "turn_threshold": t},
        )
        for t in sorted({0.5, *thresholds})
    ]
    return out + [
        ("no model, end_silence_ms 300", {"turn_model": "none", "end_silence_ms": 300}),
        ("no model, end_silence_ms 700", {"turn_model": "none", "end_silence_ms": 700}),
    ]


def share(values: list[float], above: float) -> float:
    """Percentage of `values` above `above`."""
    return 100 * sum(v > above for v in values) / len(values)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cut_of(cases: list[Case], outcomes: list[Outcome], kind: str = "hesitant") -> list[tuple[Case, Outcome]]:
    """The paused requests of this kind ("hesitant": at commas, "fluent") whose end was decided before their
    true end of speech."""
    return [(c, o) for c, o in zip(cases, outcomes, strict=True) if c.kind == kind and o.decided_ms < 0]


def share_text(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.0f} %)"


async def turn_table(
    cases: list[Case],
    models: Path,
    thresholds: list[float],
    *,
    end_probabilities: list[float],
    unlikely_bars: list[float],
    only: list[str],
) -> None:
    """The acceptance table: per configuration, cuts among hesitant requests and the decision delay after
    the true end of the complete ones (counted in samples, so the machine's load does not enter)."""
    from concurrent.futures import ThreadPoolExecutor

    from daemon.config.settings import EndpointSettings
    from daemon.listen import turn
    from daemon.listen.turn import load_turn_model, load_turn_words

    # Counted in samples, the table does not depend on the machine's speed, except where a judgement times
    # out and hands a request to the silence rule: on a shared, loaded machine that happens now and then, so
    # the limit is raised here (the paced daemon runs below keep the daemon's own).
    daemon_timeout_s, turn.JUDGEMENT_TIMEOUT_S = turn.JUDGEMENT_TIMEOUT_S, 10.0
    executor = ThreadPoolExecutor(max_workers=1)
    loaded = load_turn_model(EndpointSettings(), models / MODEL)
    words = load_turn_words(EndpointSettings())
    main = [c for c in cases if not c.extra]
    extra = [c for c in cases if c.extra]
    n_complete = sum(c.kind == "complete" for c in main)
    n_hesitant = sum(c.kind == "hesitant" for c in main)
    n_fluent = sum(c.kind == "fluent" for c in main)
    voices = sorted({c.voice for c in cases}, key=[v[0] for v in TURN_VOICES].index)
    print(
        f"\nEnd of turn on {n_complete} complete and {n_hesitant} hesitant requests ({len(voices)} voices; pauses "
        f"{', '.join(f'{p * 1000:.0f}' for p in PAUSES_S)} ms, after a function word: the acceptance set, paused "
        f"at commas), the same {n_fluent} paused in fluent speech (fluent cut), and on "
        f"the extra set of {sum(c.kind == 'hesitant' for c in extra)} requests paused after a content word and "
        "their complete versions. 'decided' = input sample of the decision − true end of speech (from the "
        "synthesized audio), in ms; the wall-clock commit adds the judgement time."
    )
    print(
        "| configuration | hesitant cut (commas) | fluent cut | cut per voice (commas; fluent) | "
        "complete: decided median | p90 | ended by model | extra set: hesitant cut | "
        "extra set: complete decided median (p90) | judgements per request | inference ms median (p90) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    cut_lists: list[tuple[str, list[tuple[Case, Outcome]]]] = []
    for label, overrides in configs(thresholds, end_probabilities, unlikely_bars):
        if only and not any(o in label for o in only):
            continue
        settings = EndpointSettings(**overrides)
        model = loaded if settings.turn_model == "smart-turn" else None
        heard = words if settings.turn_words == "pocketsphinx" else None
        if heard is not None:
            heard.min_end_probability = settings.turn_min_end_probability
            heard.forget_channel()  # every configuration hears the requests from the same starting point
        outcomes = [await decide(c, settings, model, heard, executor) for c in cases]
        by_case = dict(zip((id(c) for c in cases), outcomes, strict=True))
        out_main = [by_case[id(c)] for c in main]
        out_extra = [by_case[id(c)] for c in extra]
        cut, cut_extra = cut_of(main, out_main), cut_of(extra, out_extra)
        cut_fluent = cut_of(main, out_main, "fluent")
        per_voice = " ".join(f"{sum(1 for c, _ in cut if c.voice == v)}" for v in voices)
        per_voice += "; " + " ".join(f"{sum(1 for c, _ in cut_fluent if c.voice == v)}" for v in voices)
        delays = [o.decided_ms for c, o in zip(main, out_main, strict=True) if c.kind == "complete"]
        by_model = sum(1 for c, o in zip(main, out_main, strict=True) if c.kind == "complete" and o.reason == "model")
        extra_delays = [o.decided_ms for c, o in zip(extra, out_extra, strict=True) if c.kind == "complete"]
        judgements = [o.judgements for o in outcomes]
        inference = [ms for o in outcomes for ms in o.inference_ms]
        inf = f"{statistics.median(inference):.0f} ({pct(inference, 0.9):.0f})" if inference else "–"
        print(
            f"| {label} | {share_text(len(cut), n_hesitant)} | {share_text(len(cut_fluent), n_fluent)} | {per_voice} | "
            f"{statistics.median(delays):.0f} | "
            f"{pct(delays, 0.9):.0f} | {by_model}/{n_complete} | "
            f"{share_text(len(cut_extra), len(extra_delays))} | "
            f"{statistics.median(extra_delays):.0f} ({pct(extra_delays, 0.9):.0f}) | "
            f"{statistics.mean(judgements):.1f} | {inf} |"
        )
        if settings.turn_model != "none":
            cut_lists.append((label, cut + cut_fluent + cut_extra))
    print(f"(cut per voice: {', '.join(voices)})")
    for label, cut in cut_lists[:1] + [x for x in cut_lists if "(before)" in x[0]]:
        print(f"\ncut by '{label}': {len(cut)}")
        for c, o in cut:
            print(
                f"  {'extra ' if c.extra else ''}{c.kind} {c.voice} {c.text!r} pauses {c.pauses_s} s: decided "
                f"{-o.decided_ms:.0f} ms before the end"
            )
    if words is not None:
        print(
            f"\nword recognizer (PocketSphinx en-US, its own thread): {words.audio_s:.0f} s of audio decoded in "
            f"{words.decode_s:.1f} s = {words.decode_s / max(words.audio_s, 1e-9):.3f} × real time"
        )
        words.close()
    executor.shutdown()
    turn.JUDGEMENT_TIMEOUT_S = daemon_timeout_s


async def distributions(cases: list[Case], models: Path) -> None:
    """What the model answers after each length of silence: for complete requests at their end, for hesitant
    ones in each mid-sentence pause (as long as the pause lasts). Read it to choose a policy."""
    from daemon.listen.smart_turn import SmartTurn

    model = SmartTurn(models / MODEL)
    silences_ms = (0, 90, 150, 210, 270, 330, 390, 510, 600, 800, 1000)
    rows: dict[str, dict[int, list[float]]] = {
        "complete, at the end": {},
        "hesitant, in a mid-sentence pause": {},
        "fluent cut, in a mid-sentence pause": {},
    }
    for case in (c for c in cases if not c.extra):
        spans = case.clip.spans
        ends = [(spans[-1].end, 10**9)] if case.kind == "complete" else [
            (spans[i].end, spans[i + 1].start - spans[i].end) for i in range(len(spans) - 1)
        ]  # fmt: skip
        key = {"complete": "complete, at the end", "hesitant": "hesitant, in a mid-sentence pause"}.get(
            case.kind, "fluent cut, in a mid-sentence pause"
        )
        for end, pause in ends:
            for ms in silences_ms:
                if ms * 16 < pause:
                    rows[key].setdefault(ms, []).append(model.predict(case.clip.pcm[: end + ms * 16]))
    print("\nSmart Turn's p(finished) after each silence: p10 / median / p90, and the share above 0.5 and 0.95")
    print("| silence ms | " + " | ".join(rows) + " |\n|---|---|---|---|")
    for ms in silences_ms:
        cells = []
        for per_silence in rows.values():
            v = per_silence.get(ms, [])
            above = f">0.5 {share(v, 0.5):.0f} %, >0.95 {share(v, 0.95):.0f} %"
            quantiles = f"{pct(v, 0.1):.2f} / {statistics.median(v):.2f} / {pct(v, 0.9):.2f}"
            cells.append(f"{quantiles}; {above} (n={len(v)})" if v else "–")
        print(f"| {ms} | " + " | ".join(cells) + " |")


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
    chosen = [c for c in cases if c.kind == "complete" and not c.extra and c.voice in ("Piper ×1.0", "espeak 160")]
    server = ThreadedRealtimeServer(api_key=API_KEY, chunk_ms=20, first_delta_delay_ms=FIRST_DELTA_MS).start()
    print(
        f"\nThrough the daemon at real-time pace against the test Realtime server (first delta after "
        f"{FIRST_DELTA_MS} ms): true end of speech → input_audio_buffer.commit and → first answer sample at the sink"
    )
    print(
        "| configuration | runs | → commit median | p90 | → first answer sample median | p90 |\n"
        "|---|---|---|---|---|---|"
    )
    plan = (
        ("Smart Turn + last word (defaults)", {}, runs),
        ("Smart Turn alone (turn_words = none)", {"turn_words": "none"}, runs),
        ("no model, end_silence_ms 700 (before)", {"turn_model": "none"}, baseline_runs),
    )
    results: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label, _, _ in plan}
    cycle = chosen * (max(runs, baseline_runs) // max(1, len(chosen)) + 1)
    try:
        # the configurations take turns run by run, so a change in the machine's load falls on all of them
        for i, case in enumerate(cycle[: max(runs, baseline_runs)]):
            for label, endpoint, n in plan:
                if i >= n:
                    continue
                server.server.replies.clear()
                server.server.replies.append(Reply(audio=tone(300)))
                c, e = await daemon_run(case, wake, models, server.url, endpoint)
                results[label][0].append(c)
                results[label][1].append(e)
    finally:
        server.stop()
    for label, (commit, ear) in results.items():
        if commit:
            print(
                f"| {label} | {len(commit)} | {statistics.median(commit):.0f} | {pct(commit, 0.9):.0f} | "
                f"{statistics.median(ear):.0f} | {pct(ear, 0.9):.0f} |"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--no-speech", action="store_true", help="only the CPU and memory table")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.5], help="turn_threshold values to compare")
    parser.add_argument(
        "--end-probabilities", type=float, nargs="*", default=[0.05], help="turn_min_end_probability values"
    )
    parser.add_argument(
        "--unlikely-bars", type=float, nargs="*", default=[], help="turn_unlikely_end_threshold values (< 1)"
    )
    parser.add_argument("--configs", nargs="*", default=[], help="only the table rows whose label contains one")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU and memory tables")
    parser.add_argument("--daemon-runs", type=int, default=20, help="paced daemon runs with the model (0 = none)")
    parser.add_argument("--baseline-runs", type=int, default=6, help="paced daemon runs with turn_model = none")
    parser.add_argument("--only-daemon", action="store_true", help="only the paced daemon runs")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hark-bench-speech")
    parser.add_argument("--distributions", action="store_true", help="the model's answers per silence length")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-words", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_words:
        print(json.dumps(measure_words()))
        return 0
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
    if not args.no_cpu:
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
        cmd = [sys.executable, __file__, "--child-words"]
        row = json.loads(
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600).stdout.splitlines()[-1]
        )
        print(
            f"word recognizer (turn_words = pocketsphinx): load {row['load_ms']:.0f} ms, RSS added "
            f"{row['rss_added_mb']:.1f} MB, {row['rtf']:.3f} × real time on 8 s of noise"
        )
    if not args.no_speech:
        args.cache.mkdir(parents=True, exist_ok=True)
        cases = corpus(args.models, args.cache)
        if args.distributions:
            asyncio.run(distributions(cases, args.models))
        asyncio.run(
            turn_table(
                cases,
                args.models,
                args.thresholds,
                end_probabilities=args.end_probabilities,
                unlikely_bars=args.unlikely_bars,
                only=args.configs,
            )
        )
        if args.daemon_runs or args.baseline_runs:
            asyncio.run(latency_table(cases, args.models, args.cache, args.daemon_runs, args.baseline_runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
