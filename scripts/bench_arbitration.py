#!/usr/bin/env python3
"""Benchmark wake arbitration: three speakers on one real Mosquitto hear the same "hey jarvis, what time is it".

    .venv/bin/python scripts/bench_arbitration.py [--trials 20] [--window-ms 150] [--models DIR]

Each trial runs three whole daemons in this process (tests/arbitration_rig.py), each with its own test
Realtime server, reading the utterance at 0, −6 and −12 dB (shuffled per trial) at real-time pace, started
with random offsets of 0–40 ms. Printed per trial: who answered, the Realtime appends each server received,
and the winner's end of request → first answer sample. Then the same with arbitration off (one speaker, same
utterance, interleaved) for the added latency, and once with the broker stopped (each must answer alone).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from daemon.config.settings import Settings  # noqa: E402


async def bench(models: Path, cache: Path, trials: int, window_ms: int) -> int:
    from tests.arbitration_rig import answer_latency_ms, speakers, trial, utterance
    from tests.fixtures_mqtt import _broker, free_port
    from tests.speech import Speech

    speech = Speech(cache, models)
    wav = utterance(speech)
    group = speakers(3)
    solo = speakers(1)
    tmp = Path(tempfile.mkdtemp(prefix="hark-bench-arb-"))
    port = free_port()
    broker_gen = _broker(tmp, f"listener {port} 127.0.0.1\nallow_anonymous true\n", [port])
    broker = next(broker_gen)
    ok = 0
    added: list[float] = []
    print(
        "| trial | gains (spk0, spk1, spk2) | answered | appends per server | winner: end of request → first sample |"
    )
    print("|---|---|---|---|---|")
    try:
        for i in range(trials):
            await trial(tmp / f"t{i}", models, wav, group, port, arbitration_ms=window_ms, seed=i)
            await trial(tmp / f"s{i}", models, wav, solo, None, seed=i)  # the same utterance, no arbitration
            answered = [s for s in group if s.answered]
            loudest = max(group, key=lambda s: s.gain_db)
            good = answered == [loudest] and all(s.appends == 0 for s in group if s is not loudest)
            ok += good
            won = answer_latency_ms(loudest.run) if loudest.run else None
            base = answer_latency_ms(solo[0].run) if solo[0].run else None
            if won is not None and base is not None:
                added.append(won - base)
            print(
                f"| {i + 1} | {', '.join(f'{s.gain_db:+.0f}' for s in group)} dB | "
                f"{', '.join(s.device for s in answered) or 'nobody'}{'' if good else ' **WRONG**'} | "
                f"{', '.join(str(s.appends) for s in group)} | "
                f"{'–' if won is None else f'{won:.0f} ms'} (alone: {'–' if base is None else f'{base:.0f} ms'}) |",
                flush=True,
            )
        broker.stop()
        await trial(tmp / "down", models, wav, group, port, arbitration_ms=window_ms, wait_connected=False)
        alone = [s.device for s in group if s.answered]
    finally:
        for s in group + solo:
            s.server.stop()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    med = statistics.median(added) if added else float("nan")
    print(
        f"\nexactly one answered, the loudest, with 0 appends on the others: {ok}/{trials}; "
        f"added latency to the winner's first answer sample (vs the same utterance without arbitration): "
        f"median {med:.0f} ms, max {max(added, default=float('nan')):.0f} ms (target ≤ {window_ms + 20} ms); "
        f"broker stopped: answered alone: {alone}"
    )
    return 0 if ok == trials and len(alone) == 3 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--window-ms", type=int, default=150)
    parser.add_argument("--models", type=Path, default=Settings().models_dir)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hark-bench-speech")
    args = parser.parse_args()
    if args.trials < 1:
        parser.error(f"--trials {args.trials}: expected at least 1")
    args.cache.mkdir(parents=True, exist_ok=True)
    return asyncio.run(bench(args.models, args.cache, args.trials, args.window_ms))


if __name__ == "__main__":
    sys.exit(main())
