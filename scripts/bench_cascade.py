#!/usr/bin/env python3
"""Benchmark the cascade backend's own overhead, against the cascade test server with fixed stage delays.

    .venv/bin/python scripts/bench_cascade.py [--turns 12] [--stt-ms 150] [--llm-ms 200] [--tts-ms 100]
                                              [--server process|thread]

The whole daemon runs on a WAV fed at real-time pace: `--turns` times "hey jarvis" + a request. The test
server answers each stage after a fixed delay (transcription, first token, first speech audio), so the
time from the end of the turn (the endpoint decision, `speech_ended`) to the first answer sample taken by
the sink (`playback_started`), minus those delays, is what Hark itself adds: uploading, parsing, splitting
the first sentence, synthesis (Piper) and playback start. Run with the local Piper voice and with streamed
remote speech; the speech delay applies to the remote voice only. Per-stage figures come from the trace.

The server runs in a child process by default (`--server process`), as a real server runs elsewhere: in a
thread of the benchmark's own process (`--server thread`), its request parsing and JSON encoding compete with
the daemon for the GIL and are charged to Hark. The machine's load average is printed beside every figure:
on a shared machine it moves them more than anything in the code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.config.settings import Settings  # noqa: E402

API_KEY = "sk-bench-hark"
ANSWER = "It is noon. The sun is high and the sky is clear."
TARGET_MS = 40.0


def make_clip(models: Path, cache: Path, turns: int) -> Path:
    from tests.speech import Speech

    speech = Speech(cache, models)
    wake, request = speech.espeak("Hey Jarvis"), speech.espeak("What time is it")
    clip = speech.concat([wake, request] * turns, [1.0] + [0.4, 5.0] * turns)
    return speech.wav(clip, f"bench-cascade-{turns}")


async def run_mode(wav: Path, models: Path, url: str, tts: str | dict[str, Any]) -> list[dict[str, Any]]:
    from tests.harness import settings_for, start

    stage = {"base_url": url, "timeout_s": 5.0}
    with tempfile.TemporaryDirectory(prefix="hark-bench-cascade-") as tmp:
        settings = settings_for(
            Path(tmp),
            models,
            wav,
            audio={"realtime_pace": True},
            conversation={"backend": "cascade"},
            cascade={"stt": stage, "llm": stage, "tts": tts if tts == "piper" else {**stage, **tts}},
        )
        daemon, run = await start(settings, api_key=API_KEY)
        voice = daemon.assistant.parts.voice
        if tts == "piper" and voice is not None:
            await voice.pieces_ready()  # the voice is cut in the background after it loads (a few seconds)
        try:
            await asyncio.wait_for(daemon.assistant.run(), 600)
        finally:
            await daemon.aclose()
    return run.records


def turns_of(records: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per turn: the trace times (s) of the end of the turn, each stage's request and first result, and the
    first sample at the sink."""
    out: list[dict[str, float]] = []
    cur: dict[str, float] | None = None
    for r in records:
        name = r["event"]
        if name == "speech_ended":
            cur = {"end": r["t"]}
            out.append(cur)
        elif cur is None:
            continue
        elif name == "cascade_request":
            cur.setdefault(f"{r['stage']}_sent", r["t"])
        elif name == "cascade_first":
            cur.setdefault(f"{r['stage']}_first", r["t"])
        elif name == "playback_started":
            cur.setdefault("sink", r["t"])
        elif name == "fallback":
            cur["fallback"] = 1.0
    return [t for t in out if "sink" in t and "fallback" not in t]


def add_server_times(turns: list[dict[str, float]], answered: list[tuple[str, float, float]]) -> None:
    """Each stage's request as the server saw it: body received (`<stage>_recv`) and its fixed delay over
    (`<stage>_due`), matched to the turn by time."""
    for t in turns:
        for stage, received, due in answered:
            sent, first = t.get(f"{stage}_sent"), t.get(f"{stage}_first")
            if sent is not None and first is not None and sent <= received <= first:
                t.setdefault(f"{stage}_recv", received)
                t.setdefault(f"{stage}_due", due)


def server_answers(server: Any, timing: Path) -> list[tuple[str, float, float]]:
    from tests.cascade_server import ThreadedCascadeServer

    if isinstance(server, ThreadedCascadeServer):  # in a thread: its record is at hand
        return list(server.server.record.answered)
    lines = timing.read_text(encoding="utf-8").splitlines() if timing.exists() else []
    return [(str(a), float(b), float(c)) for a, b, c in map(json.loads, lines)]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} / {five:.2f} (1 / 5 min)"


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ms (max {max(values):.0f})" if values else "not measured"


def rows(
    label: str, turns: list[dict[str, float]], delays_ms: float, delays: dict[str, float]
) -> list[tuple[str, str]]:
    def ms(a: str, b: str) -> list[float]:
        return [(t[b] - t[a]) * 1000 for t in turns if a in t and b in t]

    overhead = [v - delays_ms for v in ms("end", "sink")]
    out = [
        (f"{label}: end of turn → first sample at sink", med(ms("end", "sink"))),
        (f"{label}: **overhead** (minus {delays_ms:.0f} ms of stage delays)", med(overhead)),
        (f"{label}:   end of turn → transcription request sent", med(ms("end", "stt_sent"))),
        (f"{label}:   transcription request → first transcript (incl. server delay)", med(ms("stt_sent", "stt_first"))),
        (f"{label}:   transcript → chat request sent", med(ms("stt_first", "llm_sent"))),
        (f"{label}:   chat request → first chunk (incl. server delay)", med(ms("llm_sent", "llm_first"))),
    ]
    for stage, name, delay in (("stt", "transcription", "stt"), ("llm", "chat", "llm"), ("tts", "speech", "tts")):
        if not any(f"{stage}_recv" in t for t in turns):
            continue
        late = [(t[f"{stage}_due"] - t[f"{stage}_recv"]) * 1000 - delays[delay] for t in turns if f"{stage}_due" in t]
        out.append(
            (f"{label}:     {name}: request sent → received by the server", med(ms(f"{stage}_sent", f"{stage}_recv")))
        )
        out.append((f"{label}:     {name}: the server's own lateness after its delay", med(late)))
        out.append(
            (
                f"{label}:     {name}: server answers → client has the first result",
                med(ms(f"{stage}_due", f"{stage}_first")),
            )
        )
    if any("tts_sent" in t for t in turns):
        out.append((f"{label}:   first token → speech request sent", med(ms("llm_first", "tts_sent"))))
        out.append((f"{label}:   speech request → first audio (incl. server delay)", med(ms("tts_sent", "tts_first"))))
        out.append((f"{label}:   first speech audio → first sample at sink", med(ms("tts_first", "sink"))))
    else:
        out.append((f"{label}:   first token → first sample at sink (Piper)", med(ms("llm_first", "sink"))))
    return out


def start_server(args: argparse.Namespace, timing: Path) -> Any:
    from tests.cascade_server import ChatReply, ProcessCascadeServer, ThreadedCascadeServer

    delays = {"stt_delay_ms": args.stt_ms, "llm_first_ms": args.llm_ms, "tts_first_ms": args.tts_ms}
    # token_ms=0: after its first token the fake model writes instantly; only Hark's time is left
    if args.server == "process":
        return ProcessCascadeServer(api_key=API_KEY, token_ms=0, reply=ANSWER, timing=timing, **delays).start()
    server = ThreadedCascadeServer(api_key=API_KEY, token_ms=0, **delays).start()
    server.server.default_reply = ChatReply(ANSWER)
    return server


async def bench(args: argparse.Namespace) -> None:
    args.cache.mkdir(parents=True, exist_ok=True)
    wav = make_clip(args.models, args.cache, args.turns)
    timing = Path(tempfile.mkdtemp(prefix="hark-bench-cascade-")) / "server-timing.jsonl"
    server = start_server(args, timing)
    stage_delays = {"stt": float(args.stt_ms), "llm": float(args.llm_ms), "tts": float(args.tts_ms)}
    table: list[tuple[str, str]] = []
    overheads: dict[str, float] = {}
    loads: dict[str, str] = {}
    try:
        for label, tts, delays in (
            ("Piper", "piper", args.stt_ms + args.llm_ms),
            (
                "streamed speech",
                {"model": "gpt-4o-mini-tts", "voice": "marin"},
                args.stt_ms + args.llm_ms + args.tts_ms,
            ),
        ):
            started, before = time.monotonic(), load()
            turns = turns_of(await run_mode(wav, args.models, server.url, tts))
            loads[label] = f"{before} before, {load()} after"
            took_s = time.monotonic() - started
            print(f"  {label}: {len(turns)} turns in {took_s:.0f} s; {loads[label]}", file=sys.stderr)
            add_server_times(turns, server_answers(server, timing))
            table += rows(label, turns, delays, stage_delays)
            overheads[label] = statistics.median([(t["sink"] - t["end"]) * 1000 - delays for t in turns])
    finally:
        server.stop()
    print(
        f"{args.turns} turns per voice; fixed server delays: transcription {args.stt_ms} ms, first token "
        f"{args.llm_ms} ms, first speech audio {args.tts_ms} ms (remote voice only); server in a "
        f"{'child process' if args.server == 'process' else 'thread of this process'}; medians (max)\n"
    )
    print("| measure | median (max) |\n|---|---|")
    for label, value in table:
        print(f"| {label} | {value} |")
    print()
    for label, value in overheads.items():
        verdict = "met" if value <= TARGET_MS else "MISSED"
        print(f"overhead with {label}: {value:.0f} ms (target ≤ {TARGET_MS:.0f} ms: {verdict}); {loads[label]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=12, help="turns per voice (at least 10 for the README)")
    parser.add_argument("--stt-ms", type=int, default=150)
    parser.add_argument("--llm-ms", type=int, default=200)
    parser.add_argument("--tts-ms", type=int, default=100)
    parser.add_argument(
        "--server",
        choices=("process", "thread"),
        default="process",
        help="run the test server in a child process (as a real server runs elsewhere) or in a thread of this one",
    )
    parser.add_argument("--models", type=Path, default=Settings().models_dir, help="models directory")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hark-bench-speech")
    args = parser.parse_args()
    if args.turns < 1:
        parser.error(f"--turns {args.turns}: expected at least 1")
    if not (args.models / "openwakeword").is_dir():
        parser.error(f"--models {args.models}: no openwakeword/ inside; run scripts/fetch-models first")
    asyncio.run(bench(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
