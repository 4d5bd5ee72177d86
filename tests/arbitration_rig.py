"""Three speakers, one broker, one "hey jarvis": the rig shared by the arbitration test and its benchmark.

Each speaker is a whole daemon (tests.harness) in this process, with its own test Realtime server, reading
the same utterance from a WAV at its own gain, at real-time pace (arbitration is about wall time), started
with a small random offset."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tests.fixtures_realtime import API_KEY
from tests.harness import Run, settings_for, start
from tests.realtime_server import Record, ThreadedRealtimeServer
from tests.speech import Speech, read_wav, write_wav

GAINS_DB = (0.0, -6.0, -12.0)


@dataclass
class Speaker:
    device: str
    gain_db: float
    server: ThreadedRealtimeServer
    run: Run | None = None

    @property
    def appends(self) -> int:
        return int(self.server.record.count("input_audio_buffer.append"))

    @property
    def answered(self) -> bool:
        assert self.run is not None
        return bool(self.run.events("playback_started")) and "listening" in self.run.states()


def utterance(speech: Speech) -> Path:
    """Silence, the wake phrase, the request right after it (no pause: the window must not lose it), silence."""
    clip = speech.concat([speech.espeak("hey jarvis"), speech.espeak("what time is it")], [1.2, 0.15, 1.5])
    return speech.wav(clip, "arbitration-utterance")


def at_gain(wav: Path, gain_db: float, dest: Path) -> Path:
    pcm, _rate = read_wav(wav)
    write_wav(dest, np.clip(pcm.astype(np.float64) * 10 ** (gain_db / 20), -32768, 32767).astype(np.int16))
    return dest


def speakers(count: int = 3) -> list[Speaker]:
    return [
        Speaker(f"spk{i}", GAINS_DB[i], ThreadedRealtimeServer(api_key=API_KEY, chunk_ms=20).start())
        for i in range(count)
    ]


async def trial(
    tmp: Path,
    models_dir: Path,
    wav: Path,
    group: list[Speaker],
    broker_port: int | None,
    arbitration_ms: int = 150,
    max_offset_s: float = 0.04,
    seed: int = 0,
    wait_connected: bool = True,
) -> list[Speaker]:
    """One utterance heard by every speaker of `group` (gains shuffled by `seed`); returns them with their runs."""
    rng = random.Random(seed)
    gains = list(GAINS_DB[: len(group)])
    rng.shuffle(gains)
    daemons = []
    for spk, gain in zip(group, gains, strict=True):
        spk.gain_db = gain
        spk.server.server.record = Record()  # a fresh record per trial
        d = tmp / f"{spk.device}-{seed}"
        d.mkdir(parents=True, exist_ok=True)
        mqtt: dict[str, Any] = {"host": "", "device_id": spk.device}
        if broker_port is not None:
            mqtt = {
                "host": "127.0.0.1",
                "port": broker_port,
                "device_id": spk.device,
                "discovery": False,
                "arbitration_ms": arbitration_ms,
                "reconnect_max_s": 1.0,
            }
        settings = settings_for(
            d,
            models_dir,
            at_gain(wav, gain, d / "in.wav"),
            audio={"realtime_pace": True},
            mqtt=mqtt,
            realtime={"url": spk.server.url},
            fallback={"load": "lazy"},
        )
        daemon, spk.run = await start(settings, api_key=API_KEY)
        daemons.append(daemon)
    try:
        if (
            broker_port is not None and wait_connected
        ):  # connected before the wake word, as a speaker that has been up a while
            for daemon in daemons:
                await _until(lambda daemon=daemon: daemon.bridge is not None and daemon.bridge.connected, 10.0)

        async def one(daemon: Any) -> int:
            await asyncio.sleep(rng.uniform(0, max_offset_s))
            return int(await daemon.assistant.run())

        await asyncio.wait_for(asyncio.gather(*(one(d) for d in daemons)), 90)
    finally:
        for daemon in daemons:
            await daemon.aclose()
    return group


async def _until(predicate: Any, timeout_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not true within {timeout_s} s")
        await asyncio.sleep(0.02)


def answer_latency_ms(run: Run) -> float | None:
    """End of the request (speech_ended) → first answer sample written (playback_started), in ms."""
    ended, played = run.events("speech_ended"), run.events("playback_started")
    if not ended or not played:
        return None
    return (played[0]["t"] - ended[0]["t"]) * 1000
