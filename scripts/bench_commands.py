#!/usr/bin/env python3
"""Benchmark on-device command recognition: accuracy on test speech, confusion, CPU, load time, RSS added.

    .venv/bin/python scripts/bench_commands.py [--voices piper en-us ...] [--held-out] [--snr-db 10] [--noise-seed K]
                                               [--end-silence-s 0.2 | --in-pause] [--min-score X] [--json FILE]
                                               [--e2e N]

The household is tests/intents/household.py (5 intents, 5 rooms, 42 in-domain requests, 14 out-of-domain
ones, several of them near misses like "turn on the kitchen radio"). Each request is spoken by the Piper
voice and by espeak-ng voices, trimmed to its audible speech and framed like the daemon hands it over: 0.3 s
of pre-roll before the speech, `--end-silence-s` after its last sound (0.2 s: with the default turn model the
daemon ends the request ~210 ms into the pause, and `--e2e` prints what it really handed over) or, with
`--in-pause`, cut where the responder decides in the pause (daemon.intents.responder.PAUSE_MS), a -70 dBFS
noise floor; clean and with white noise at `--snr-db` below the speech's RMS. "Exact" = the intent and every
slot value as expected; "acted" = an out-of-domain request that would have been carried out. The issue's test
set is the default voices; `--held-out` adds a second set the recognizer and `commands.min_score` were not
tuned on (espeak-ng en-gb, en-us+f1, en-us+m1, en-us+m7 and the Piper voice 25 % slower), to show the choice
holds beyond the speech it was chosen on.
"CPU per request-second" is the CPU time spent deciding (this process and the decoders' two) divided by the
seconds of request audio (pre-roll and end-of-speech silence included, as the daemon hands it over). "RSS added"
is resident memory after building the recognizer minus just before (pocketsphinx and hassil already imported,
as the daemon has them), plus all of the two decoders' processes.
Timings depend on the machine's load: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.speech import espeak_wav, piper_wav, read_wav, speech_bounds  # noqa: E402

RATE = 16000
TEST_VOICES = ["piper", "en-us", "en-us+f3", "en-us+m3"]
HELD_OUT_VOICES = ["en-gb", "en-us+f1", "en-us+m1", "en-us+m7", "piper-slow"]
ESPEAK = {v: {"voice": v, "speed": 150} for v in ["en-us", "en-us+f3", "en-us+m3", *HELD_OUT_VOICES[:4]]}
PIPER = {"piper": {}, "piper-slow": {"length_scale": 1.25}}
SWEEP = (-3.5, -4.0, -4.25, -4.5, -4.75, -5.0, -5.5, -6.0)
END_SILENCE_S = 0.2
"""Audio after the last sound in what the daemon hands the recognizer (endpoint.turn_model = "smart-turn")."""
GOALS = "goals: clean exact >= 95 %, noisy exact >= 85 %, out-of-domain acted <= 2 %"


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def load_average() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def speech(text: str, voice: str, models: Path, cache: Path) -> np.ndarray:
    if voice in PIPER:
        path = piper_wav(text, models, cache, **PIPER[voice])
    else:
        path = espeak_wav(text, cache, **ESPEAK[voice])
    pcm, _ = read_wav(path)
    first, last = speech_bounds(pcm)
    return pcm[first:last]


def framed(pcm: np.ndarray, snr_db: float | None, seed: int, end_silence_s: float | None = END_SILENCE_S) -> bytes:
    """Pre-roll, the speech, end-of-speech silence (None: as decided in the pause); a faint floor, or white noise
    `snr_db` below the speech."""
    if end_silence_s is None:
        return in_pause(framed(pcm, snr_db, seed, 0.7))
    after = np.zeros(round(end_silence_s * RATE))
    x = np.concatenate([np.zeros(int(0.3 * RATE)), pcm.astype(np.float64), after])
    rng = np.random.default_rng(seed)
    speech_rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
    noise_rms = speech_rms / (10 ** (snr_db / 20)) if snr_db is not None else 32768 * 10 ** (-70 / 20)
    x = x + rng.normal(0.0, noise_rms, len(x))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16).tobytes()


def in_pause(request: bytes) -> bytes:
    """The request as the responder's decision in the pause sees it: cut at the first 30 ms frame where PAUSE_MS
    of quiet followed the last sound so far, and no sound came after (a decision speech followed is not used)."""
    from daemon.intents.recognizer import speech_span
    from daemon.intents.responder import PAUSE_MS

    frame = 480 * 2
    sound_end = speech_span(request).sound_end
    for cut in range(frame, len(request) + 1, frame):
        if cut >= sound_end and cut - speech_span(request[:cut]).sound_end >= PAUSE_MS * 32:
            return request[:cut]
    return request


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voices", nargs="+", default=TEST_VOICES, choices=[*ESPEAK, *PIPER])
    ap.add_argument("--held-out", action="store_true", help="also the held-out voice set (second table)")
    ap.add_argument("--snr-db", type=float, default=10.0)
    ap.add_argument("--noise-seed", type=int, default=0, help="another draw of the noise (offset of its seeds)")
    ap.add_argument(
        "--end-silence-s", type=float, default=END_SILENCE_S, help="audio after the last sound (0.7: the silence rule)"
    )
    ap.add_argument("--in-pause", action="store_true", help="frame requests as decided in the pause instead")
    ap.add_argument("--min-score", type=float, default=None, help="override commands.min_score")
    ap.add_argument("--models", type=Path, default=ROOT / "models")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--e2e", type=int, default=0, help="also N offline turns through the daemon (real Mosquitto)")
    ap.add_argument("--skip-accuracy", action="store_true")
    args = ap.parse_args()
    if args.e2e:
        import asyncio

        asyncio.run(end_to_end(args.e2e, args.models))
    if args.skip_accuracy:
        return 0

    import hassil  # noqa: F401  (imported before the RSS baseline: the daemon imports them anyway)
    import pocketsphinx  # noqa: F401

    from daemon.config.loader import from_dict
    from daemon.intents.recognizer import Recognizer
    from daemon.intents.spec import CommandBook
    from tests.intents.household import CONFIG

    settings = from_dict(CONFIG)
    min_score = settings.commands.min_score if args.min_score is None else args.min_score
    before = rss_kib()
    t0 = time.perf_counter()
    rec = Recognizer(CommandBook(settings.commands), -1e9)  # every whole sentence; thresholds applied below
    load_s = time.perf_counter() - t0
    rec.recognize(framed(np.zeros(RATE, dtype=np.int16), None, 0))
    rss_added_mib = (rss_kib() - before + sum(rss_kib(pid) for pid in rec.pids)) / 1024  # the decoders: all of them
    print(
        f"recognizer: load {load_s:.2f} s, RSS added {rss_added_mib:.1f} MiB, min_score {min_score}, "
        + ("decided in the pause" if args.in_pause else f"{args.end_silence_s:g} s after the last sound")
    )
    end_silence_s = None if args.in_pause else args.end_silence_s

    sets = [("test set", args.voices)] + ([("held-out set", HELD_OUT_VOICES)] if args.held_out else [])
    out: dict[str, Any] = {
        "load_s": load_s,
        "rss_added_mib": rss_added_mib,
        "min_score": min_score,
        "end_silence_s": end_silence_s,
    }
    for name, voices in sets:
        rows, timing = run_set(rec, voices, args.snr_db, end_silence_s, args.models, noise_seed=args.noise_seed)
        for r in rows:
            r["acted"] = r["got"] if r["got"] and r["score"] >= min_score else ""
            r["exact"] = bool(r["want"]) and r["acted"] == r["want"] and r["got_slots"] == r["slots"]
        print(
            f"\n## {name}: {', '.join(voices)}\n\nrecognizer: CPU per request-second {timing['cpu_per_s']:.4f} s "
            f"({100 * timing['cpu_per_s']:.1f} % of one core), decision median {timing['median_ms']:.0f} ms, "
            f"p95 {timing['p95_ms']:.0f} ms ({timing['load']})"
        )
        print_tables(rows, voices, min_score)
        out[name] = {**timing, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


def run_set(
    rec: Any, voices: list[str], snr_db: float, end_silence_s: float | None, models: Path, *, noise_seed: int = 0
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every request of the household, by every voice, clean and noisy: what the recognizer made of each."""
    from tests.intents.household import IN_DOMAIN, OUT_OF_DOMAIN

    cache = Path(tempfile.gettempdir()) / "hark-bench-commands"
    cache.mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    cpu_s = audio_s = 0.0
    ms: list[float] = []
    for voice in voices:
        for condition, snr in (("clean", None), ("noisy", snr_db)):
            for i, (text, intent, slots) in enumerate([*IN_DOMAIN, *((t, "", {}) for t in OUT_OF_DOMAIN)]):
                audio = framed(speech(text, voice, models, cache), snr, noise_seed + i, end_silence_s)
                c0, p0 = time.process_time(), rec.cpu_s
                got = rec.recognize(audio)
                cpu_s += time.process_time() - c0 + rec.cpu_s - p0
                audio_s += len(audio) / 2 / RATE
                ms.append(got.ms)
                cmd = got.command
                rows.append(
                    {
                        "voice": voice,
                        "condition": condition,
                        "text": text,
                        "want": intent,
                        "slots": slots,
                        "got": cmd.intent.name if cmd else "",
                        "got_slots": cmd.slots if cmd else {},
                        "heard": got.text,
                        "why_not": got.why_not,
                        "score": round(got.score, 2),
                    }
                )
    timing = {
        "cpu_per_s": cpu_s / audio_s,
        "median_ms": statistics.median(ms),
        "p95_ms": sorted(ms)[int(0.95 * len(ms))],
        "load": load_average(),
    }
    return rows, timing


def print_tables(rows: list[dict[str, Any]], voices: list[str], min_score: float) -> None:
    """The acceptance table (per voice and in all), the min_score sweep, the confusion summary and the errors."""
    print(
        f"\n{GOALS}\n\n| voice | condition | in-domain exact | in-domain wrong action | out-of-domain acted |"
        "\n|---|---|---|---|---|"
    )
    totals: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0, 0])
    for voice in voices:
        for condition in ("clean", "noisy"):
            sel = [r for r in rows if r["voice"] == voice and r["condition"] == condition]
            ind = [r for r in sel if r["want"]]
            ood = [r for r in sel if not r["want"]]
            exact = sum(r["exact"] for r in ind)
            wrong = sum(bool(r["acted"]) and not r["exact"] for r in ind)
            acted = sum(bool(r["acted"]) for r in ood)
            for k, v in enumerate((exact, len(ind), wrong, acted, len(ood))):
                totals[condition][k] += v
            print(
                f"| {voice} | {condition} | {exact}/{len(ind)} ({100 * exact / len(ind):.0f} %) | {wrong} "
                f"| {acted}/{len(ood)} |"
            )
    for condition, (e, n, w, a, m) in totals.items():
        print(f"| all | {condition} | {e}/{n} ({100 * e / n:.1f} %) | {w} | {a}/{m} ({100 * a / m:.1f} %) |")

    print("\nmin_score sweep (clean exact / noisy exact / out-of-domain acted clean / noisy):")
    for th in (*SWEEP, -1e9):
        line = []
        for cond in ("clean", "noisy"):
            ind = [r for r in rows if r["condition"] == cond and r["want"]]
            ok = sum(r["got"] == r["want"] and r["got_slots"] == r["slots"] and r["score"] >= th for r in ind)
            line.append(f"{100 * ok / len(ind):.1f} %")
        for cond in ("clean", "noisy"):
            ood = [r for r in rows if r["condition"] == cond and not r["want"]]
            acted = sum(bool(r["got"]) and r["score"] >= th for r in ood)
            line.append(f"{100 * acted / len(ood):.1f} %")
        mark = " (min_score)" if th == min_score else ""
        print(f"  {th if th > -1e8 else 'none':>5}: {' / '.join(line)}{mark}")

    print("\nconfusion (expected → what happened, count):")
    confusion: collections.Counter[tuple[str, str]] = collections.Counter()
    for r in rows:
        if r["want"] and not r["exact"]:
            if not r["acted"]:
                what = "rejected: " + (r["why_not"] or "score below min_score")
            elif r["acted"] == r["want"]:
                what = f"{r['want']} with wrong slots"
            else:
                what = f"acted as {r['acted']}"
            confusion[(r["want"], what.split(" < ")[0])] += 1
        elif not r["want"] and r["acted"]:
            confusion[("out-of-domain", f"acted as {r['acted']}")] += 1
    for (want, what), n in confusion.most_common():
        print(f"  {want:14} {what}: {n}")
    print("\nerrors (voice, condition, said → heard, score):")
    for r in rows:
        if (r["want"] and not r["exact"]) or (not r["want"] and r["acted"]):
            print(
                f"  {r['voice']:10} {r['condition']:5} {r['text']!r} → {r['heard']!r} "
                f"({r['score']}, {r['acted'] or 'no'})"
            )


async def end_to_end(turns: int, models: Path) -> None:
    """Offline turns through the whole daemon, WAV fed at real-time pace: "hey jarvis, <command>" with the
    Realtime endpoint refused → the tool's publish as a second MQTT client receives it. Figures: from the
    endpointer's decision (speech_ended) and from the last word; where the time after speech_ended goes (to
    the decision: the answer path, the cloud's fallback decision and what the recognizer had left to do; the
    recognizer's own time; from the decision to the publish: the tool call and Mosquitto); how many turns were
    decided in the pause; how much audio after the last word the daemon handed over at speech_ended
    (decided_sample)."""
    import asyncio
    import subprocess

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from daemon.config.loader import from_dict
    from tests.fixtures_mqtt import free_port
    from tests.harness import merge, start
    from tests.intents.household import CONFIG, IN_DOMAIN
    from tests.speech import concat, write_wav

    work = Path(tempfile.mkdtemp(prefix="hark-bench-commands-"))
    port = free_port()
    (work / "mosquitto.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
    broker = subprocess.Popen(  # noqa: ASYNC220 - a benchmark's setup, before anything runs on the loop
        ["mosquitto", "-c", str(work / "mosquitto.conf")], stderr=subprocess.DEVNULL
    )
    arrivals: list[float] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-probe")
    client.on_message = lambda _c, _u, _m: arrivals.append(time.monotonic())
    cache = Path(tempfile.gettempdir()) / "hark-bench-commands"
    cache.mkdir(exist_ok=True)
    after_decision: list[float] = []
    after_words: list[float] = []
    split: dict[str, list[float]] = {"to_decision": [], "recognizer": [], "to_publish": [], "handed_after": []}
    in_pause = 0
    judged_ms: list[float] = []
    try:
        await asyncio.sleep(0.3)  # mosquitto listens ~10 ms after spawn
        client.connect("127.0.0.1", port)
        client.subscribe("home/#")
        client.loop_start()
        for i in range(turns):
            text = IN_DOMAIN[(i * 5) % len(IN_DOMAIN)][0]
            wake = espeak_wav("Hey Jarvis", cache)
            clip = concat([wake, piper_wav(text, models, cache)], [0.5, 0.5, 1.5])
            wav = work / f"turn{i}.wav"
            write_wav(wav, clip.pcm)
            tmp = work / f"run{i}"
            tmp.mkdir()
            raw = merge(
                CONFIG,
                {
                    "audio": {"input": f"wav:{wav}", "output": f"wav:{tmp / 'out.wav'}", "realtime_pace": True},
                    "paths": {"models": str(models), "state": str(tmp)},
                    "chimes": {"wake": "", "done": "", "error": ""},
                    "conversation": {"followup_seconds": 0},
                    "realtime": {"transcription_model": "", "url": f"ws://127.0.0.1:{free_port()}/v1"},
                    "mqtt": {"host": "127.0.0.1", "port": port, "device_id": "bench"},
                },
            )
            daemon, run = await start(from_dict(raw), api_key="sk-bench")
            await asyncio.sleep(1.0)  # the bridge connects and the recognizer loads before the WAV starts
            arrivals.clear()
            started = time.monotonic()
            try:
                await asyncio.wait_for(daemon.assistant.run(), 60)
            finally:
                await daemon.aclose()
            ended = [r for r in run.records if r["event"] == "speech_ended"]
            if not arrivals or not ended:
                print(f"  e2e turn {i} ({text!r}): no publish")
                continue
            after_decision.append(1000 * (arrivals[0] - ended[0]["t"]))
            last_word_s = clip.spans[-1].end / RATE
            after_words.append(1000 * (arrivals[0] - started) - 1000 * last_word_s)
            judged_ms += [r["inference_ms"] for r in run.records if r["event"] == "turn_judged"]
            recognized = [r for r in run.records if r["event"] == "command_recognized"]
            if recognized:
                cmd = recognized[0]
                # the event is published as the decision is carried out: a decision made in the pause (started
                # before speech_ended) is ready at once; one made after it took the recognizer's time
                started_ms = 1000 * (cmd["t"] - ended[0]["t"]) - cmd["ms"]
                in_pause += started_ms < 0
                split["to_decision"].append(1000 * (cmd["t"] - ended[0]["t"]))
                split["recognizer"].append(cmd["ms"])
                split["to_publish"].append(1000 * (arrivals[0] - cmd["t"]))
            if ended[0].get("decided_sample") is not None:
                split["handed_after"].append((ended[0]["decided_sample"] - clip.spans[-1].end) / RATE * 1000)
    finally:
        client.loop_stop()
        client.disconnect()
        broker.terminate()
        broker.wait(timeout=5)
    if after_decision:
        print(
            f"end to end, {len(after_decision)}/{turns} offline turns: speech_ended → MQTT publish median "
            f"{statistics.median(after_decision):.0f} ms (max {max(after_decision):.0f}); last word → publish "
            f"median {statistics.median(after_words):.0f} ms, of which last word → speech_ended "
            f"{statistics.median(w - d for w, d in zip(after_words, after_decision, strict=True)):.0f} ms "
            f"({load_average()})"
        )
        print(
            "  after speech_ended, median (max): "
            + "; ".join(
                f"{name.replace('_', ' ')} {statistics.median(ms):.0f} ({max(ms):.0f}) ms"
                for name, ms in split.items()
                if ms and name != "handed_after"
            )
        )
        print(
            f"  decided in the pause, before speech_ended: {in_pause} of {len(split['recognizer'])} turns; "
            f"turn model inference median {statistics.median(judged_ms or [0]):.0f} ms (it competes for the CPU)"
        )
    if split["handed_after"]:
        ms = split["handed_after"]
        print(
            f"  audio after the last word at speech_ended: median {statistics.median(ms):.0f} ms "
            f"({min(ms):.0f}–{max(ms):.0f})"
        )


if __name__ == "__main__":
    raise SystemExit(main())
