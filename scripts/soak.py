#!/usr/bin/env python3
"""The full accelerated soak (issue 6): an hour of audio, a wake phrase and a request every 20 s, through
the whole daemon at full speed against the test Realtime server; prints RSS growth after warm-up.

    .venv/bin/python scripts/soak.py [--minutes 60] [--every 10] [--warmup 10] [--tracemalloc] [--mqtt-port P]

Exit status 0 when growth stays under 5 %, 1 otherwise. `--tracemalloc` (slower) lists the lines whose
allocations grew most between warm-up and the end: where to look when RSS grows.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures_speech import default_models_dir  # noqa: E402
from tests.speech import Speech  # noqa: E402
from tests.system.test_soak import CYCLE_S, MAX_GROWTH, soak, write_soak_wav  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0, help="audio to feed (default 60)")
    ap.add_argument("--every", type=int, default=10, help="sample RSS every N turns (default 10)")
    ap.add_argument("--warmup", type=int, default=10, help="turns before the baseline sample (default 10)")
    ap.add_argument("--tracemalloc", action="store_true", help="also report which lines' allocations grew")
    ap.add_argument("--mqtt-port", type=int, default=0, help="publish to a broker on 127.0.0.1:PORT")
    ap.add_argument("--models", type=Path, default=default_models_dir(), help="models dir (scripts/fetch-models)")
    args = ap.parse_args()
    cycles = max(1, round(args.minutes * 60 / CYCLE_S))
    if args.warmup >= cycles:
        ap.error(f"--warmup {args.warmup} must be fewer than the {cycles} turns in {args.minutes} minutes")
    if not (args.models / "openwakeword").exists():
        ap.error(f"no models in {args.models}: run scripts/fetch-models --dest {args.models}")
    with tempfile.TemporaryDirectory(prefix="hark-soak-") as tmp:
        work = Path(tmp)
        (work / "speech").mkdir()
        wav = work / "soak.wav"
        audio_s = write_soak_wav(wav, Speech(work / "speech", args.models), cycles)
        print(f"{wav.stat().st_size / 2**20:.0f} MiB of audio ({cycles} turns); feeding it at full speed", flush=True)
        if args.tracemalloc:
            tracemalloc.start(10)
        report = asyncio.run(
            soak(work, args.models, wav, audio_s, every=args.every, warmup=args.warmup, mqtt_port=args.mqtt_port)
        )
    print("\n".join(report.lines()))
    return 0 if report.growth < MAX_GROWTH else 1


if __name__ == "__main__":
    sys.exit(main())
