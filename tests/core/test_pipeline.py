"""The whole daemon on real speech: wake word, endpoint, states, answer, exit at the end of a WAV."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from daemon.audio.frames import INPUT_RATE_HZ
from tests.harness import run_once, settings_for
from tests.speech import Speech


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


async def test_wake_request_answer_round_trip_without_cloud(tmp_path: Path, speech: Speech, models_dir: Path) -> None:
    """No API key: the wake word opens a turn, the endpoint closes it, the local voice answers, back to idle."""
    clip = speech.concat([speech.espeak("Hey Jarvis"), speech.espeak("What time is it")], [1.0, 0.4, 2.0])
    settings = settings_for(tmp_path, models_dir, speech.wav(clip, "pipeline-1"))
    run = await run_once(settings)
    assert run.status == 0
    assert run.states() == ["listening", "processing", "responding", "idle"]
    wake = run.first("wake_detected")
    assert wake["model"] == "hey_jarvis" and wake["score"] >= 0.5
    assert clip.spans[0].start <= wake["sample"] <= clip.spans[1].start
    ended = run.first("speech_ended")["sample"]
    assert abs(ended - clip.spans[1].end) <= 0.06 * INPUT_RATE_HZ
    assert run.first("fallback")["reason"] == "no_api_key"
    assert wav_seconds(tmp_path / "out.wav") > 1.0  # the spoken fallback sentence


async def test_no_speech_after_wake_returns_to_idle(tmp_path: Path, speech: Speech, models_dir: Path) -> None:
    clip = speech.concat([speech.espeak("Hey Jarvis")], [1.0, 3.0])
    settings = settings_for(
        tmp_path, models_dir, speech.wav(clip, "pipeline-nospeech"), endpoint={"start_timeout_s": 1.5}
    )
    run = await run_once(settings)
    assert run.states() == ["listening", "idle"]
    assert run.events("no_speech") and not run.events("fallback")


async def test_other_speech_never_opens_a_turn(tmp_path: Path, speech: Speech, models_dir: Path) -> None:
    sentences = ["The weather is nice today", "Please pass the salt", "I think we should leave at noon"]
    clip = speech.concat([speech.espeak(s) for s in sentences], [0.5, 0.7, 0.7, 0.5])
    run = await run_once(settings_for(tmp_path, models_dir, speech.wav(clip, "pipeline-other")))
    assert run.states() == [] and not run.events("wake_detected")


async def test_trace_file_holds_the_audio_events(tmp_path: Path, speech: Speech, models_dir: Path) -> None:
    from daemon.observe.trace import read
    from tests.harness import start

    clip = speech.concat([speech.espeak("Hey Jarvis"), speech.espeak("Turn on the lights")], [1.0, 0.3, 1.5])
    settings = settings_for(tmp_path, models_dir, speech.wav(clip, "pipeline-trace"))
    daemon, _ = await start(settings, trace_path=tmp_path / "trace.jsonl")
    try:
        await daemon.assistant.run()
    finally:
        await daemon.aclose()
    names = [r["event"] for r in read(tmp_path / "trace.jsonl")]
    for name in (
        "wake_detected",
        "state",
        "speech_started",
        "speech_ended",
        "playback_started",
        "playback_stopped",
    ):
        assert name in names
    assert all(isinstance(r["t"], float) for r in read(tmp_path / "trace.jsonl"))


def test_wav_output_leaves_out_silence_between_answers(tmp_path: Path, speech: Speech, models_dir: Path) -> None:
    """Two turns in one WAV: the output holds the two answers back to back, not the minutes between."""
    import asyncio

    turn = [speech.espeak("Hey Jarvis"), speech.espeak("What time is it")]
    clip = speech.concat(turn + turn, [1.0, 0.4, 6.0, 0.4, 2.0])
    settings = settings_for(tmp_path, models_dir, speech.wav(clip, "pipeline-two"), audio={"realtime_pace": True})
    run = asyncio.run(run_once(settings))
    assert run.states().count("responding") == 2
    out = wav_seconds(tmp_path / "out.wav")
    played = sum(r["played_ms"] for r in run.events("playback_stopped")) / 1000
    assert abs(out - played) < 0.5 and out < clip.duration_s
    assert np.abs(np.frombuffer((tmp_path / "out.wav").read_bytes()[44:], "<i2")).max() > 1000


async def test_chime_responder_closes_the_loop_with_no_cloud_and_no_voice(
    tmp_path: Path, speech: Speech, models_dir: Path
) -> None:
    clip = speech.concat([speech.espeak("Hey Jarvis"), speech.espeak("Are you there")], [1.0, 0.4, 2.0])
    settings = settings_for(
        tmp_path, models_dir, speech.wav(clip, "pipeline-chime"), conversation={"responder": "chime"}
    )
    run = await run_once(settings)
    assert run.states() == ["listening", "processing", "responding", "idle"]
    assert run.events("fallback") == []
    assert 0.1 < wav_seconds(tmp_path / "out.wav") < 1.0  # the short "done" chime


async def test_wake_word_cuts_an_announcement_short(tmp_path: Path, speech: Speech, models_dir: Path) -> None:
    """An announcement is interrupted by "hey jarvis" like an answer: silenced, and the new turn listens."""
    import asyncio

    from tests.harness import start, wait_for_event

    clip = speech.concat([speech.espeak("Hey Jarvis"), speech.espeak("Stop")], [4.0, 0.3, 2.0])
    settings = settings_for(tmp_path, models_dir, speech.wav(clip, "pipeline-announce"), audio={"realtime_pace": True})
    daemon, run = await start(settings)
    task = asyncio.create_task(daemon.assistant.run())
    try:
        await asyncio.sleep(0.5)
        daemon.controller.say(
            "This is a long announcement. The washing machine has finished its cycle. Please take the laundry out. "
            "Dinner will be ready in twenty minutes. The weather tomorrow will be sunny and warm."
        )
        await wait_for_event(run, "announcement", timeout_s=10)
        interrupted = await wait_for_event(run, "interrupted", timeout_s=20)
        await asyncio.wait_for(task, 60)
    finally:
        await daemon.aclose()
    assert interrupted["reason"] == "barge-in"
    assert run.states()[:2] == ["responding", "listening"]
    stopped = [r for r in run.events("playback_stopped") if r["reason"] == "stopped"]
    assert stopped and stopped[0]["played_ms"] < 9000  # cut short, not played to the end
    after = [r for r in run.records if r["t"] > interrupted["t"] and r["event"] == "playback_started"]
    assert all(r["t"] >= run.first("speech_ended")["t"] for r in after)  # nothing more of the announcement
