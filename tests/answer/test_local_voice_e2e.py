"""Issue 4 end to end: whatever the network does, the user hears a spoken answer and the speaker is idle after."""

from __future__ import annotations

import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import soxr
import webrtcvad

from tests.fixtures_realtime import API_KEY
from tests.harness import run_once, settings_for
from tests.realtime_server import Reply, ThreadedRealtimeServer, tone
from tests.speech import Speech

REPO = Path(__file__).resolve().parents[2]


def speech_seconds(path: Path) -> float:
    """How much of a WAV webrtcvad calls speech (the test of "a spoken message", not a tone)."""
    with wave.open(str(path), "rb") as w:
        rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), "<i2")
    pcm16 = soxr.resample(pcm, rate, 16000).astype(np.int16)
    vad = webrtcvad.Vad(2)
    frames = [pcm16[i : i + 480].tobytes() for i in range(0, len(pcm16) - 480, 480)]
    return sum(vad.is_speech(f, 16000) for f in frames) * 0.03


def request(speech: Speech) -> list[Path]:
    return [speech.espeak("Hey Jarvis"), speech.espeak("What time is it")]


@pytest.fixture
def clip_wav(speech: Speech) -> Path:
    return speech.wav(speech.concat(request(speech), [1.0, 0.4, 2.0]), "fallback-turn")


async def _fallback_run(tmp_path: Path, models_dir: Path, wav: Path, url: str, key: str = API_KEY, **extra: dict):
    settings = settings_for(
        tmp_path,
        models_dir,
        wav,
        realtime={"url": url, "connect_timeout": 2.0, "response_timeout": 2.0, **extra.pop("realtime", {})},
        **extra,
    )
    return await run_once(settings, api_key=key)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("refused", "unreachable"), ("401", "auth"), ("stall", "timeout"), ("nokey", "no_api_key")],
)
async def test_failure_before_the_answer_is_spoken_locally(
    tmp_path: Path,
    models_dir: Path,
    clip_wav: Path,
    realtime_server: ThreadedRealtimeServer,
    closed_port_url: str,
    fault: str,
    reason: str,
) -> None:
    url, key = realtime_server.url, API_KEY
    if fault == "refused":
        url = closed_port_url
    elif fault == "401":
        key = "sk-wrong"
    elif fault == "stall":
        realtime_server.faults.stall = "first"
    elif fault == "nokey":
        key = ""
    run = await _fallback_run(tmp_path, models_dir, clip_wav, url, key)
    assert [r["reason"] for r in run.events("fallback")] == [reason]
    assert run.states() == ["listening", "processing", "responding", "idle"]
    assert speech_seconds(tmp_path / "out.wav") > 0.8


async def test_drop_mid_answer_plays_what_came_then_says_so(
    tmp_path: Path, models_dir: Path, clip_wav: Path, realtime_server: ThreadedRealtimeServer
) -> None:
    realtime_server.server.default_reply = Reply(audio=tone(3000))
    realtime_server.faults.drop_after_ms = 600
    run = await _fallback_run(tmp_path, models_dir, clip_wav, realtime_server.url)
    assert [r["reason"] for r in run.events("fallback")] == ["dropped"]
    assert run.states() == ["listening", "processing", "responding", "idle"]
    played = sum(r["played_ms"] for r in run.events("playback_stopped"))
    assert played > 600 + 800  # the tone that arrived, then the spoken sentence
    assert speech_seconds(tmp_path / "out.wav") > 0.8


async def test_cost_cap_answers_locally_without_connecting(
    tmp_path: Path, models_dir: Path, speech: Speech, realtime_server: ThreadedRealtimeServer
) -> None:
    two = speech.concat(request(speech) * 2, [1.0, 0.4, 4.0, 0.4, 2.0])
    run = await _fallback_run(
        tmp_path,
        models_dir,
        speech.wav(two, "fallback-two"),
        realtime_server.url,
        cost={"daily_limit": 0.0001},
        audio={"realtime_pace": True},
    )
    assert [r["reason"] for r in run.events("fallback")] == ["cost_limit"]
    assert len(run.events("response_done")) == 1


async def test_breaker_opens_after_failures_and_answers_at_once(
    tmp_path: Path, models_dir: Path, speech: Speech, realtime_server: ThreadedRealtimeServer
) -> None:
    realtime_server.faults.stall = "first"
    three = speech.concat(request(speech) * 3, [1.0, 0.4, 6.0, 0.4, 6.0, 0.4, 2.0])
    run = await _fallback_run(
        tmp_path,
        models_dir,
        speech.wav(three, "fallback-three"),
        realtime_server.url,
        fallback={"breaker_failures": 2, "probe_min_s": 60},
        audio={"realtime_pace": True},
    )
    assert [r["reason"] for r in run.events("fallback")] == ["timeout", "timeout", "breaker_open"]
    assert run.events("breaker")[0]["state"] == "open"
    assert run.states().count("idle") == 3


async def test_text_mode_speaks_the_streamed_text_with_the_local_voice(
    tmp_path: Path, models_dir: Path, clip_wav: Path, realtime_server: ThreadedRealtimeServer
) -> None:
    realtime_server.server.default_reply = Reply(transcript="It is ten past four. Have a nice afternoon.")
    run = await _fallback_run(tmp_path, models_dir, clip_wav, realtime_server.url, realtime={"output": "text"})
    assert run.events("fallback") == []
    assert realtime_server.record.sessions[-1]["output_modalities"] == ["text"]
    assert run.states() == ["listening", "processing", "responding", "idle"]
    assert speech_seconds(tmp_path / "out.wav") > 1.5
    usage = run.first("response_done")["usage"]
    assert usage["output_audio"] == 0 and usage["output_text"] > 0


def test_hark_say_works_offline(tmp_path: Path, models_dir: Path) -> None:
    out = tmp_path / "say.wav"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HARK_MODELS_DIR": str(models_dir)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "daemon",
            "--set",
            f'audio.output="wav:{out}"',
            "--set",
            "audio.realtime_pace=false",
            "say",
            "The washing machine has finished.",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert speech_seconds(out) > 1.0


async def test_cost_cap_survives_a_restart(
    tmp_path: Path, models_dir: Path, clip_wav: Path, realtime_server: ThreadedRealtimeServer
) -> None:
    """The day's spend is kept in the state dir: restarting the daemon does not reset the cap."""
    first = await _fallback_run(tmp_path, models_dir, clip_wav, realtime_server.url, cost={"daily_limit": 0.0001})
    assert first.events("fallback") == [] and first.events("response_done")
    second = await _fallback_run(tmp_path, models_dir, clip_wav, realtime_server.url, cost={"daily_limit": 0.0001})
    assert [r["reason"] for r in second.events("fallback")] == ["cost_limit"]
    assert realtime_server.record.connections == 1
