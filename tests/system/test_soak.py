"""Issue 6, the accelerated soak: a long recording with a wake phrase and a request every ~20 s, fed through
the whole daemon at full speed against the test Realtime server, with the process's RSS sampled every few
turns. A speaker runs for months: memory that grows per turn is a crash on a Pi, so growth after warm-up must
stay under 5 %. The test runs ~10 minutes of audio; `scripts/soak.py` runs the full hour and can name what
grows (tracemalloc).

Why the server runs in a child process: it records every byte it receives, which would be counted as the
daemon's growth. Why no harness `Run`: it keeps every trace record, which would grow too.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import time
import tracemalloc
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest

from daemon import app
from daemon.audio.frames import INPUT_RATE_HZ
from daemon.config.settings import Secrets
from daemon.observe.bus import EventBus
from tests.fixtures_mqtt import Broker
from tests.fixtures_realtime import API_KEY
from tests.harness import settings_for
from tests.records import record_into
from tests.speech import Speech

CYCLE_S = 20.0
REQUESTS = ("What time is it", "Will it rain today", "Set a timer for ten minutes")
MAX_GROWTH = 0.05
SERVER = """
import asyncio, sys
from tests.realtime_server import RealtimeTestServer, Reply, tone

async def main():
    s = RealtimeTestServer(api_key=sys.argv[1], chunk_ms=40, realtime_pace=False)
    s.default_reply = Reply(audio=tone(1000))
    await s.start()
    print(s.url, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin

asyncio.run(main())
"""


@dataclass
class SoakReport:
    """What a soak measured; `growth` is end RSS over the RSS after warm-up, minus one."""

    audio_s: float = 0.0
    wall_s: float = 0.0
    turns: int = 0
    answered: int = 0
    fallbacks: int = 0
    samples: list[tuple[int, float]] = field(default_factory=list)
    """(turns so far, RSS MiB)."""
    warm_rss_mib: float = 0.0
    top_growth: list[str] = field(default_factory=list)

    @property
    def end_rss_mib(self) -> float:
        return self.samples[-1][1] if self.samples else 0.0

    @property
    def growth(self) -> float:
        return self.end_rss_mib / self.warm_rss_mib - 1.0 if self.warm_rss_mib else 0.0

    def lines(self) -> list[str]:
        speed = self.audio_s / max(self.wall_s, 1e-9)
        out = [
            f"audio {self.audio_s / 60:.1f} min in {self.wall_s:.0f} s wall ({speed:.0f}x real time)",
            f"turns {self.turns}, answered by the cloud {self.answered}, fallbacks {self.fallbacks}",
            f"RSS after warm-up {self.warm_rss_mib:.1f} MiB, at the end {self.end_rss_mib:.1f} MiB,"
            f" growth {self.growth * 100:+.2f} % (limit {MAX_GROWTH * 100:.0f} %)",
            "samples (turn: MiB): " + ", ".join(f"{t}: {m:.1f}" for t, m in self.samples),
        ]
        return out + [f"grew: {line}" for line in self.top_growth]


def write_soak_wav(path: Path, speech: Speech, cycles: int) -> float:
    """`cycles` × (wake phrase, a request, silence up to CYCLE_S), streamed to disk one cycle at a time."""
    clips = []
    for request in REQUESTS:
        clip = speech.concat([speech.espeak("Hey Jarvis"), speech.espeak(request)], [1.0, 0.4, 0.0])
        pad = np.zeros(max(0, round(CYCLE_S * INPUT_RATE_HZ) - len(clip.pcm)), dtype=np.int16)
        clips.append(np.concatenate([clip.pcm, pad]).tobytes())
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(INPUT_RATE_HZ)
        for i in range(cycles):
            w.writeframes(clips[i % len(clips)])
    return cycles * CYCLE_S


@dataclass
class _Sampler:
    """A trace listener that counts turns and samples RSS every `every` turns (stores no records)."""

    report: SoakReport
    every: int
    warmup: int
    proc: psutil.Process = field(default_factory=psutil.Process)
    snapshot: Any = None

    def sample(self) -> None:
        gc.collect()
        rss = self.proc.memory_info().rss / 2**20
        self.report.samples.append((self.report.turns, rss))
        if self.report.turns == self.warmup:
            self.report.warm_rss_mib = rss
            if tracemalloc.is_tracing():
                self.snapshot = tracemalloc.take_snapshot()

    def __call__(self, record: dict[str, Any]) -> None:
        ev = record["event"]
        if ev == "response_done":
            self.report.answered += 1
        elif ev == "fallback":
            self.report.fallbacks += 1
        elif ev == "state" and record["to"] == "idle":
            self.report.turns += 1
            if self.report.turns == self.warmup or self.report.turns % self.every == 0:
                self.sample()


def start_server() -> tuple[subprocess.Popen[str], str]:
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, API_KEY], cwd=repo, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("ws://"):
        proc.kill()
        raise RuntimeError(f"the test Realtime server did not start (printed {url!r})")
    return proc, url


def stop_server(proc: subprocess.Popen[str]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


async def soak(
    tmp: Path, models_dir: Path, wav: Path, audio_s: float, *, every: int = 5, warmup: int = 5, mqtt_port: int = 0
) -> SoakReport:
    """Run the daemon over `wav` at full speed; bounded by 10 % of the audio's duration plus 5 minutes."""
    report = SoakReport(audio_s=audio_s)
    sampler = _Sampler(report, every, warmup)
    server, url = start_server()
    try:
        extra: dict[str, Any] = {"realtime": {"url": url, "transcription_model": ""}}
        if mqtt_port:
            extra["mqtt"] = {"host": "127.0.0.1", "port": mqtt_port, "device_id": "soak"}
        settings = settings_for(tmp, models_dir, wav, **extra)
        bus = record_into(EventBus(), sampler)
        daemon = await app.build(settings, Secrets(openai_api_key=API_KEY), bus)
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(daemon.assistant.run(), audio_s * 0.1 + 300)
            report.wall_s = time.monotonic() - t0
            sampler.sample()  # the end: still running, everything a long-lived daemon would hold
        finally:
            await daemon.aclose()
        if sampler.snapshot is not None:
            stats = tracemalloc.take_snapshot().compare_to(sampler.snapshot, "lineno")
            grown = sorted((s for s in stats if s.size_diff > 0), key=lambda s: s.size_diff, reverse=True)
            report.top_growth = [str(s) for s in grown[:10]]
    finally:
        stop_server(server)
    return report


@pytest.fixture
def soak_wav(tmp_path: Path, speech: Speech) -> Iterator[tuple[Path, float]]:
    path = tmp_path / "soak.wav"
    yield path, write_soak_wav(path, speech, cycles=30)  # 10 minutes


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_rss_stays_flat_over_ten_minutes_of_turns(
    tmp_path: Path, models_dir: Path, soak_wav: tuple[Path, float], mosquitto: Broker
) -> None:
    wav, audio_s = soak_wav
    report = await soak(tmp_path, models_dir, wav, audio_s, every=5, warmup=5, mqtt_port=mosquitto.port)
    text = "\n".join(report.lines())
    print(text)  # shown with -s or on failure: the figures for the report
    assert report.turns >= 27, f"most wake phrases should have led to a turn:\n{text}"
    assert report.answered >= report.turns - 2 and report.fallbacks == 0, text
    assert report.growth < MAX_GROWTH, f"RSS grew too much:\n{text}"
