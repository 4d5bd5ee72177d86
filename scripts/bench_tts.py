#!/usr/bin/env python3
"""Benchmark the local Piper voice: load time, RSS, time to first audio, real-time factor.

    .venv/bin/python scripts/bench_tts.py [--reps 5] [--voice en_US-joe-medium] [--models DIR]

Load time and RSS are measured in fresh child processes (a second load in one process would hit warm caches
and double-count memory). Prints a markdown table of medians for the README.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil  # noqa: E402

from daemon.answer.voice import LocalVoice  # noqa: E402
from daemon.config.settings import FallbackSettings, Settings  # noqa: E402

ONE = "The kitchen light is now off."
FIVE = (
    "Here is the weather for today. It will be sunny in the morning, with a few clouds later on. "
    "The high will be twenty-one degrees. Tonight it cools down to twelve degrees. Have a nice day!"
)
TARGET_FIRST_AUDIO_MS = 300.0
TARGET_FALLBACK_MS = 1000.0


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 1e6


async def _child_load(voice: str, models: Path) -> dict[str, float]:
    """One cold start: RSS before/after load, load time, and lazy first use (load + first audio)."""
    rss_before = _rss_mb()
    v = LocalVoice(FallbackSettings(voice=voice), models)
    started = time.perf_counter()
    await v.load()
    load_s = time.perf_counter() - started
    rss_loaded = _rss_mb()
    stream = v.speak(ONE)
    await anext(stream)
    lazy_first_s = time.perf_counter() - started
    await stream.aclose()
    rss_after_speaking = _rss_mb()
    await v.close()
    return {
        "load_s": load_s,
        "rss_before_mb": rss_before,
        "rss_loaded_mb": rss_loaded,
        "rss_speaking_mb": rss_after_speaking,
        "lazy_first_audio_s": lazy_first_s,
    }


async def _first_audio_s(v: LocalVoice, text: str) -> tuple[float, float, float]:
    """(time to first chunk, time to last chunk, seconds of audio) for one answer."""
    started = time.perf_counter()
    first = None
    audio_ms = 0.0
    async for chunk in v.speak(text):
        if first is None:
            first = time.perf_counter() - started
        audio_ms += chunk.duration_ms
    assert first is not None, f"no audio for {text!r}"
    return first, time.perf_counter() - started, audio_ms / 1000


async def _warm(voice: str, models: Path, reps: int) -> dict[str, float]:
    v = LocalVoice(FallbackSettings(voice=voice), models)
    await v.load()
    await _first_audio_s(v, "Warm up.")  # first inference allocates ONNX buffers
    one = [await _first_audio_s(v, ONE) for _ in range(reps)]
    five = [await _first_audio_s(v, FIVE) for _ in range(reps)]
    await v.close()
    return {
        "first_one_ms": statistics.median(r[0] for r in one) * 1000,
        "first_five_ms": statistics.median(r[0] for r in five) * 1000,
        "total_five_ms": statistics.median(r[1] for r in five) * 1000,
        "rtf": statistics.median(r[1] / r[2] for r in five),
        "audio_five_s": statistics.median(r[2] for r in five),
    }


def fallback_rows(models: Path | None = None, reps: int = 3) -> list[tuple[str, str, str]]:
    """The local answer when the cloud fails, timed through the whole daemon on a real-time paced WAV.

    Each run has two turns against a closed port with `fallback.breaker_failures = 1`: the first is refused
    (the connection opened at the wake word fails), the second finds the breaker open and answers at once.
    Measured from the local end of speech (speech_ended) to the first sample at the sink (playback_started,
    so the default 120 ms jitter buffer is included), and from the fallback decision to the same point.
    """
    models = models or Settings().models_dir
    runs = [asyncio.run(_fallback_run(models)) for _ in range(reps)]
    out = []
    for reason, label in (("unreachable", "refused connection"), ("breaker_open", "breaker open")):
        ended = [r[reason][0] for r in runs if reason in r]
        decided = [r[reason][1] for r in runs if reason in r]
        if not ended:
            out.append((f"{label}: end of speech → first sample at sink", "not measured (no such fallback)", ""))
            continue
        ok = "met" if statistics.median(ended) <= TARGET_FALLBACK_MS else "missed"
        out += [
            (
                f"{label}: end of speech → first sample at sink",
                f"{statistics.median(ended):.0f} ms (max {max(ended):.0f}, {len(ended)} runs)",
                f"≤ {TARGET_FALLBACK_MS:.0f} ms: {ok}",
            ),
            (f"{label}: fallback decision → first sample at sink", f"{statistics.median(decided):.0f} ms", ""),
        ]
    return out


async def _fallback_run(models: Path) -> dict[str, tuple[float, float]]:
    """One daemon run; per fallback reason, (speech_ended → playback_started, fallback → playback_started) ms."""
    import socket
    import tempfile

    from tests.harness import run_once, settings_for
    from tests.speech import Speech

    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{s.getsockname()[1]}/v1"
    speech = Speech(Path(tempfile.gettempdir()) / "hark-bench-speech", models)
    speech.cache_dir.mkdir(parents=True, exist_ok=True)
    wake, ask = speech.espeak("Hey Jarvis"), speech.espeak("What time is it")
    clip = speech.concat([wake, ask, wake, ask], [1.0, 0.4, 4.5, 0.4, 4.5])
    with tempfile.TemporaryDirectory(prefix="hark-bench-fallback-") as tmp:
        settings = settings_for(
            Path(tmp),
            models,
            speech.wav(clip, "bench-fallback"),
            audio={"realtime_pace": True},
            realtime={"url": url},
            fallback={"breaker_failures": 1},
        )
        run = await run_once(settings, api_key="sk-bench-hark", timeout_s=120)
    out: dict[str, tuple[float, float]] = {}
    for fb in run.events("fallback"):
        ended = [r["t"] for r in run.events("speech_ended") if r["t"] <= fb["t"]]
        started = [r["t"] for r in run.events("playback_started") if r["t"] >= fb["t"]]
        if ended and started and fb["reason"] not in out:
            out[fb["reason"]] = ((started[0] - ended[-1]) * 1000, (started[0] - fb["t"]) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="repetitions per measurement (medians are shown)")
    parser.add_argument("--voice", default=FallbackSettings().voice, help="Piper voice name or .onnx path")
    parser.add_argument("--models", type=Path, default=Settings().models_dir, help="models directory")
    parser.add_argument("--child-load", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.reps < 1:
        parser.error(f"--reps {args.reps}: expected at least 1")
    if args.child_load:
        print(json.dumps(asyncio.run(_child_load(args.voice, args.models))))
        return 0

    cold = []
    for _ in range(max(3, args.reps // 2)):
        cmd = [sys.executable, __file__, "--child-load", "--voice", args.voice, "--models", str(args.models)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout
        cold.append(json.loads(out.strip().splitlines()[-1]))
    warm = asyncio.run(_warm(args.voice, args.models, args.reps))

    def med(key: str) -> float:
        return statistics.median(c[key] for c in cold)

    ok = "met" if warm["first_five_ms"] <= TARGET_FIRST_AUDIO_MS else "missed"
    rows = [
        ("voice load (cold process)", f"{med('load_s') * 1000:.0f} ms", ""),
        ("RSS before load", f"{med('rss_before_mb'):.0f} MB", ""),
        ("RSS with voice loaded", f"{med('rss_loaded_mb'):.0f} MB", ""),
        ("RSS after first answer", f"{med('rss_speaking_mb'):.0f} MB", ""),
        ("lazy: load + first audio", f"{med('lazy_first_audio_s') * 1000:.0f} ms", ""),
        ("first audio, 1 sentence", f"{warm['first_one_ms']:.0f} ms", f"≤ {TARGET_FIRST_AUDIO_MS:.0f} ms"),
        (
            "first audio, 5 sentences",
            f"{warm['first_five_ms']:.0f} ms",
            f"≤ {TARGET_FIRST_AUDIO_MS:.0f} ms: {ok}",
        ),
        ("all audio, 5 sentences", f"{warm['total_five_ms']:.0f} ms for {warm['audio_five_s']:.1f} s", ""),
        ("real-time factor", f"{warm['rtf']:.3f}", "< 1"),
        *fallback_rows(),
    ]
    print(f"voice {args.voice}, {args.reps} reps (cold: {len(cold)} processes), medians\n")
    print("| measure | value | target |\n|---|---|---|")
    for label, value, target in rows:
        print(f"| {label} | {value} | {target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
