"""Issue 3 end to end: the whole daemon on real speech, the real openai SDK, the test Realtime server."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from daemon.audio.frames import INPUT_RATE_HZ
from tests.fixtures_realtime import API_KEY
from tests.harness import run_once, settings_for
from tests.realtime_server import Reply, ThreadedRealtimeServer, tone
from tests.speech import Speech

REPLY_MS = 1000


def out_pcm(tmp_path: Path) -> np.ndarray:
    raw = (tmp_path / "out.wav").read_bytes()
    return np.frombuffer(raw[44:], "<i2")


def turn(speech: Speech, request: str = "What time is it") -> list[Path]:
    return [speech.espeak("Hey Jarvis"), speech.espeak(request)]


async def test_spoken_request_gets_the_streamed_answer(
    tmp_path: Path, speech: Speech, models_dir: Path, realtime_server: ThreadedRealtimeServer
) -> None:
    realtime_server.server.default_reply = Reply(audio=tone(REPLY_MS))
    clip = speech.concat(turn(speech), [1.0, 0.4, 2.0])
    settings = settings_for(
        tmp_path,
        models_dir,
        speech.wav(clip, "conv-1"),
        audio={"realtime_pace": True},
        realtime={"url": realtime_server.url},
    )
    run = await run_once(settings, api_key=API_KEY)
    assert run.states() == ["listening", "processing", "responding", "idle"]
    rec = realtime_server.record
    assert rec.count("input_audio_buffer.commit") == 1 and rec.count("response.create") == 1
    assert rec.errors == []
    # the session was open before the user stopped speaking: no connection time after the end of speech
    assert run.first("realtime_connected")["t"] <= run.first("speech_ended")["t"]
    # what was sent is the request (24 kHz) from the wake word on, not the seconds before it
    sent_s = len(rec.audio) / 48_000
    request_s = (clip.spans[1].end - clip.spans[0].end) / INPUT_RATE_HZ
    assert request_s <= sent_s <= request_s + 1.5
    # what was played is the server's reply, whole
    played = sum(r["played_ms"] for r in run.events("playback_stopped"))
    assert abs(played - REPLY_MS) <= 60
    assert np.abs(out_pcm(tmp_path)).max() > 5000
    assert [r["role"] for r in run.events("transcript")] == ["assistant"]
    deltas = "".join(r["text"] for r in run.events("transcript_delta"))
    assert deltas and deltas == run.first("transcript")["text"]


async def test_no_audio_leaves_before_a_wake_word(
    tmp_path: Path, speech: Speech, models_dir: Path, realtime_server: ThreadedRealtimeServer
) -> None:
    """Privacy: two minutes of real conversation without the wake word: no connection, zero appends."""
    clip = speech.conversation_without_wake_word()
    assert clip.duration_s >= 120
    settings = settings_for(
        tmp_path, models_dir, speech.wav(clip, "conv-privacy"), realtime={"url": realtime_server.url}
    )
    run = await run_once(settings, api_key=API_KEY)
    assert run.events("wake_detected") == []
    assert realtime_server.record.connections == 0
    assert realtime_server.record.count("input_audio_buffer.append") == 0 and len(realtime_server.record.audio) == 0


async def test_barge_in_silences_the_answer_and_truncates_what_was_heard(
    tmp_path: Path, speech: Speech, models_dir: Path, realtime_server: ThreadedRealtimeServer
) -> None:
    realtime_server.server.default_reply = Reply(audio=tone(8000))
    first = turn(speech, "Tell me a long story")
    second = turn(speech, "Stop")
    # the second "hey jarvis" comes ~3 s into the 8 s answer
    clip = speech.concat(first + second, [1.0, 0.4, 4.5, 0.3, 2.0])
    settings = settings_for(
        tmp_path,
        models_dir,
        speech.wav(clip, "conv-barge"),
        audio={"realtime_pace": True},
        realtime={"url": realtime_server.url},
    )
    run = await run_once(settings, api_key=API_KEY)
    interrupted = run.first("interrupted")
    assert interrupted["reason"] == "barge-in"
    assert run.states()[:5] == ["listening", "processing", "responding", "listening", "processing"]
    truncates = realtime_server.record.truncates
    assert len(truncates) == 1
    played = interrupted["played_ms"]
    assert 500 < played < 8000
    assert abs(truncates[0]["audio_end_ms"] - played) <= 1
    assert realtime_server.record.count("response.cancel") >= 1
    barge = [r for r in run.events("wake_detected") if r["state"] == "responding"]
    assert barge and barge[0]["score"] >= 0.8  # the stricter threshold while answering


async def test_follow_up_without_wake_word_keeps_the_context(
    tmp_path: Path, speech: Speech, models_dir: Path, realtime_server: ThreadedRealtimeServer
) -> None:
    realtime_server.server.default_reply = Reply(audio=tone(REPLY_MS))
    parts = [*turn(speech), speech.espeak("And what day is it")]
    clip = speech.concat(parts, [1.0, 0.4, 3.0, 3.0])
    settings = settings_for(
        tmp_path,
        models_dir,
        speech.wav(clip, "conv-follow"),
        audio={"realtime_pace": True},
        realtime={"url": realtime_server.url},
        conversation={"followup_seconds": 3.0},
    )
    run = await run_once(settings, api_key=API_KEY)
    assert run.states() == [
        "listening",
        "processing",
        "responding",
        "listening",
        "processing",
        "responding",
        "listening",
        "idle",
    ]
    assert len(run.events("wake_detected")) == 1
    assert realtime_server.record.connections == 1  # one session, so the model remembers the first turn
    assert realtime_server.record.count("input_audio_buffer.commit") == 2


async def test_tool_call_round_trip(
    tmp_path: Path, speech: Speech, models_dir: Path, realtime_server: ThreadedRealtimeServer
) -> None:
    realtime_server.replies.extend([Reply(function_call=("get_time", "{}")), Reply(audio=tone(REPLY_MS))])
    clip = speech.concat(turn(speech), [1.0, 0.4, 2.0])
    settings = settings_for(tmp_path, models_dir, speech.wav(clip, "conv-tool"), realtime={"url": realtime_server.url})
    run = await run_once(settings, api_key=API_KEY)
    rec = realtime_server.record
    outputs = [i for i in rec.items if i.get("type") == "function_call_output"]
    assert len(outputs) == 1 and "time" in outputs[0]["output"]
    assert rec.count("response.create") == 2 and rec.errors == []
    assert run.states() == ["listening", "processing", "responding", "idle"]
    assert abs(sum(r["played_ms"] for r in run.events("playback_stopped")) - REPLY_MS) <= 60


async def test_server_vad_mode_lets_the_server_end_the_turn(
    tmp_path: Path, speech: Speech, models_dir: Path, realtime_server: ThreadedRealtimeServer
) -> None:
    realtime_server.server.default_reply = Reply(audio=tone(REPLY_MS))
    clip = speech.concat(turn(speech), [1.0, 0.4, 2.5])
    settings = settings_for(
        tmp_path,
        models_dir,
        speech.wav(clip, "conv-server-vad"),
        audio={"realtime_pace": True},
        realtime={"url": realtime_server.url, "turn_detection": "server_vad"},
    )
    run = await run_once(settings, api_key=API_KEY)
    rec = realtime_server.record
    assert rec.sessions[-1]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert rec.count("input_audio_buffer.commit") == 0 and rec.count("response.create") == 0
    assert run.states() == ["listening", "processing", "responding", "idle"]
    assert abs(sum(r["played_ms"] for r in run.events("playback_stopped")) - REPLY_MS) <= 60
