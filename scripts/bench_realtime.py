#!/usr/bin/env python3
"""Benchmark a Realtime conversation turn from the daemon's trace, against the test Realtime server.

    .venv/bin/python scripts/bench_realtime.py [--quick] [--reps 5] [--first-delta-ms 200] [--models DIR]

Each repetition runs the whole daemon on a WAV fed at real-time pace: "hey jarvis" + a request; the server
answers (after a fixed first-delta delay) with 4 s of audio; ~2 s into it a second "hey jarvis" barges in,
followed by a short request and a short answer. Times come from the trace (monotonic `t` of each record);
the true end of each request is known from the clip's spans and placed on the same clock through the WAV
source's pacing (sample s is captured at t_run + s / 16 kHz, t_run taken just before `assistant.run()`, so
the figure errs long by under a millisecond). Repetitions run with the default jitter buffer and with the
smallest one, interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.audio.frames import INPUT_RATE_HZ  # noqa: E402
from daemon.config.settings import AudioSettings, EndpointSettings, Settings  # noqa: E402

API_KEY = "sk-bench-hark"
ANSWER_MS = 4000
SHORT_ANSWER_MS = 600
SMALL_BUFFER_MS = 20
COMMIT_SLACK_MS = 40.0
TARGET_DELTA_MS = 20.0
TARGET_BARGE_MS = 100.0


@dataclass(frozen=True)
class Rep:
    """One repetition's figures, in milliseconds (None where the trace lacked the event)."""

    commit_ms: list[float]
    endpoint_ms: list[float]
    ended_to_commit_ms: list[float]
    delta_to_sink_ms: list[float]
    barge_ms: float | None
    phrase_to_silent_ms: float | None
    setup_after_end_ms: list[float]
    first_delta_ms: list[float]


def make_clip(models: Path, cache: Path) -> tuple[Path, list[int], int]:
    """The conversation WAV, the true end samples of its two requests and of the barge-in wake phrase."""
    from tests.speech import Speech

    speech = Speech(cache, models)
    wake = speech.espeak("Hey Jarvis")
    parts = [wake, speech.espeak("What is the weather like today"), wake, speech.espeak("Stop")]
    # 2.5 s after the request: the answer has been playing for about 1.5 s when the second wake word ends
    clip = speech.concat(parts, [1.0, 0.4, 2.5, 0.3, 2.0])
    return speech.wav(clip, "bench-realtime"), [clip.spans[1].end, clip.spans[3].end], clip.spans[2].end


async def one_rep(wav: Path, ends: tuple[list[int], int], models: Path, url: str, buffer_ms: int) -> Rep:
    from tests.harness import settings_for, start

    with tempfile.TemporaryDirectory(prefix="hark-bench-rt-") as tmp:
        settings = settings_for(
            Path(tmp),
            models,
            wav,
            audio={"realtime_pace": True, "output_buffer_ms": buffer_ms},
            realtime={"url": url},
            fallback={"load": "lazy"},
            endpoint={"turn_model": "none"},  # the fixed-silence rule: scripts/bench_turn.py measures the model
        )
        daemon, run = await start(settings, api_key=API_KEY)
        try:
            t_run = time.monotonic()
            await asyncio.wait_for(daemon.assistant.run(), 120)
        finally:
            await daemon.aclose()
    return figures(run.records, t_run, *ends)


def figures(records: list[dict[str, Any]], t_run: float, request_ends: list[int], barge_end: int) -> Rep:
    """The latencies, read off the trace; true ends are placed on its clock as t_run + sample / 16 kHz."""

    def at(sample: int) -> float:
        return t_run + sample / INPUT_RATE_HZ

    def ev(name: str) -> list[dict[str, Any]]:
        return [r for r in records if r["event"] == name]

    commits = ev("commit")
    if len(commits) != len(request_ends):
        names = [r["event"] for r in records]
        raise RuntimeError(f"expected {len(request_ends)} commits (one per request), got {len(commits)}: {names}")
    commit_ms = [(c["t"] - at(end)) * 1000 for c, end in zip(commits, request_ends, strict=True)]
    ended = ev("speech_ended")
    endpoint_ms = [(e["t"] - at(end)) * 1000 for e, end in zip(ended, request_ends, strict=False)]
    ended_to_commit = [(c["t"] - e["t"]) * 1000 for e, c in zip(ended, commits, strict=False)]
    starts = ev("playback_started")
    delta_ms = []
    for delta in ev("first_delta"):
        later = [s["t"] for s in starts if s["t"] >= delta["t"]]
        if later:
            delta_ms.append((later[0] - delta["t"]) * 1000)
    barge_ms = phrase_ms = None
    barges = [w for w in ev("wake_detected") if w["state"] == "responding"]
    if barges:
        t_wake = barges[0]["t"]
        silent = [r["t"] for r in records if _silences(r) and r["t"] >= t_wake]
        if silent:
            barge_ms = (min(silent) - t_wake) * 1000
            phrase_ms = (min(silent) - at(barge_end)) * 1000
    setup = []
    connected = [c["t"] for c in ev("realtime_connected")]
    for end, commit in zip(ended, commits, strict=False):
        # the session this turn's commit went out on: a reused warm session counts as 0
        ready = [t for t in connected if t <= commit["t"]]
        if ready:
            setup.append(max(0.0, (ready[-1] - end["t"]) * 1000))
    first = [float(d["ms"]) for d in ev("first_delta")]
    return Rep(commit_ms, endpoint_ms, ended_to_commit, delta_ms, barge_ms, phrase_ms, setup, first)


def _silences(record: dict[str, Any]) -> bool:
    return (record["event"] == "playback_stopped" and record.get("reason") == "stopped") or (
        record["event"] == "interrupted"
    )


def summary(values: list[float]) -> str:
    if not values:
        return "not measured"
    med, top = statistics.median(values), max(values)
    return f"{med:.1f} ms (max {top:.1f})" if top < 10 else f"{med:.0f} ms (max {top:.0f})"


def rows(reps: dict[int, list[Rep]], end_silence_ms: int, default_buffer: int) -> list[tuple[str, str, str]]:
    allr = [r for group in reps.values() for r in group]
    commit = [v for r in allr for v in r.commit_ms]
    barge = [r.barge_ms for r in allr if r.barge_ms is not None]
    phrase = [r.phrase_to_silent_ms for r in allr if r.phrase_to_silent_ms is not None]
    endpoint = [v for r in allr for v in r.endpoint_ms]
    to_commit = [v for r in allr for v in r.ended_to_commit_ms]
    setup = [v for r in allr for v in r.setup_after_end_ms]
    first = [v for r in allr for v in r.first_delta_ms]
    commit_target = end_silence_ms + COMMIT_SLACK_MS

    def target(values: list[float], limit: float) -> str:
        ok = values and statistics.median(values) <= limit
        return f"≤ {limit:.0f} ms: {'met' if ok else 'MISSED'}"

    out = [
        ("true end of request → commit", summary(commit), target(commit, commit_target)),
        ("  of which: true end → endpoint decision (speech_ended)", summary(endpoint), ""),
        ("  of which: speech_ended → commit sent", summary(to_commit), ""),
        ("response requested → first delta (server's fixed delay)", summary(first), "(set by the test server)"),
    ]
    for buffer_ms in sorted(reps, reverse=True):
        delta = [v for r in reps[buffer_ms] for v in r.delta_to_sink_ms]
        label = f"first delta → first sample at sink, output_buffer_ms={buffer_ms}"
        label += " (default)" if buffer_ms == default_buffer else ""
        out.append((label, summary(delta), target(delta, TARGET_DELTA_MS)))
    out += [
        ("wake detected during answer → playback silent", summary(barge), target(barge, TARGET_BARGE_MS)),
        ("  true end of that wake phrase → playback silent", summary(phrase), "(includes detection)"),
        ("connection setup after end of speech", summary(setup), target(setup, 0.0).replace("≤ 0", "0")),
    ]
    return out


async def bench(args: argparse.Namespace, reps: int) -> None:
    from tests.realtime_server import Reply, ThreadedRealtimeServer, tone

    args.cache.mkdir(parents=True, exist_ok=True)
    wav, request_ends, barge_end = make_clip(args.models, args.cache)
    server = ThreadedRealtimeServer(api_key=API_KEY, chunk_ms=20, first_delta_delay_ms=args.first_delta_ms).start()
    default_buffer = AudioSettings().output_buffer_ms
    results: dict[int, list[Rep]] = {default_buffer: [], SMALL_BUFFER_MS: []}
    try:
        for rep in range(reps):
            for buffer_ms in results if rep % 2 == 0 else reversed(list(results)):
                server.server.replies.clear()
                server.server.replies.extend([Reply(audio=tone(ANSWER_MS)), Reply(audio=tone(SHORT_ANSWER_MS))])
                rep_figures = await one_rep(wav, (request_ends, barge_end), args.models, server.url, buffer_ms)
                results[buffer_ms].append(rep_figures)
            print(f"  rep {rep + 1}/{reps} done", file=sys.stderr, flush=True)
    finally:
        server.stop()
    n = sum(len(v) for v in results.values())
    print(
        f"{n} runs ({reps} per buffer size, interleaved), 2 turns each; server first-delta delay "
        f"{args.first_delta_ms} ms, 20 ms chunks; turn_model=none, end_silence_ms={EndpointSettings().end_silence_ms}; "
        "medians (max)\n"
    )
    print("| measure | median (max) | target |\n|---|---|---|")
    for label, value, target in rows(results, EndpointSettings().end_silence_ms, default_buffer):
        print(f"| {label} | {value} | {target} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=None, help="repetitions per buffer size (default 5, quick 2)")
    parser.add_argument("--quick", action="store_true", help="about 40 s: two repetitions per buffer size")
    parser.add_argument("--first-delta-ms", type=int, default=200, help="the test server's fixed first-delta delay")
    parser.add_argument("--models", type=Path, default=Settings().models_dir, help="models directory")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hark-bench-speech")
    args = parser.parse_args()
    reps = args.reps if args.reps is not None else (2 if args.quick else 5)
    if reps < 1:
        parser.error(f"--reps {reps}: expected at least 1")
    if not 0 <= args.first_delta_ms <= 5000:
        parser.error(f"--first-delta-ms {args.first_delta_ms}: expected 0 to 5000 ms")
    if not (args.models / "openwakeword").is_dir():
        parser.error(f"--models {args.models}: no openwakeword/ inside; run scripts/fetch-models first")
    asyncio.run(bench(args, reps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
