"""Issue 12 end to end: the whole daemon on spoken requests with the cascade backend (speech-to-text →
chat model → voice) against the OpenAI-compatible test server, through the real openai SDK."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.config.settings import Settings
from tests.cascade_server import ChatReply, ThreadedCascadeServer
from tests.fixtures_mqtt import Broker, MqttProbe
from tests.fixtures_realtime import API_KEY
from tests.harness import Run, run_once, settings_for, start
from tests.speech import Speech


def cascade(url: str, tts: str | dict[str, Any] = "piper", timeout_s: float = 5.0) -> dict[str, Any]:
    stage = {"base_url": url, "timeout_s": timeout_s}
    if isinstance(tts, dict):
        tts = {**stage, **tts}
    return {"stt": dict(stage), "llm": dict(stage), "tts": tts}


def make_settings(
    tmp: Path, models_dir: Path, wav: Path | None, url: str, tts: str | dict[str, Any] = "piper", **extra: Any
) -> Settings:
    timeout_s = extra.pop("timeout_s", 5.0)
    return settings_for(
        tmp,
        models_dir,
        wav,
        conversation={"backend": "cascade", **extra.pop("conversation", {})},
        cascade=cascade(url, tts, timeout_s),
        **extra,
    )


def out_pcm(tmp_path: Path) -> np.ndarray:
    return np.frombuffer((tmp_path / "out.wav").read_bytes()[44:], "<i2")


def turn(speech: Speech, request: str = "What time is it") -> list[Path]:
    return [speech.espeak("Hey Jarvis"), speech.espeak(request)]


LIGHT_TOOL = {
    "name": "set_light",
    "description": "Switch a light",
    "parameters": {"type": "object", "properties": {"room": {"type": "string"}, "on": {"type": "boolean"}}},
    "mqtt_topic": "home/lights/set",
    "response_topic": "home/lights/result",
}


async def test_spoken_request_calls_a_tool_over_mqtt_and_speaks_the_answer(
    tmp_path: Path,
    speech: Speech,
    models_dir: Path,
    cascade_server: ThreadedCascadeServer,
    mosquitto: Broker,
    mqtt_probe: Any,
) -> None:
    server = cascade_server.server
    server.transcripts.append("turn on the kitchen lights")
    server.replies.extend(
        [ChatReply(tool_call=("set_light", '{"room": "kitchen", "on": true}')), ChatReply("The kitchen light is on.")]
    )
    clip = speech.concat(turn(speech, "Turn on the kitchen lights"), [1.0, 0.4, 2.0])
    settings = make_settings(
        tmp_path,
        models_dir,
        speech.wav(clip, "cascade-tool"),
        cascade_server.url,
        mqtt={"host": "127.0.0.1", "port": mosquitto.port, "device_id": "kitchen"},
        tools=[LIGHT_TOOL],
    )
    probe: MqttProbe = mqtt_probe(mosquitto.port)
    probe.subscribe("home/lights/set")
    probe.subscribe("hark/kitchen/#")
    daemon, run = await start(settings, api_key=API_KEY)

    async def home() -> None:  # the home automation: switch the light, say so
        call = json.loads((await probe.wait_for("home/lights/set", timeout_s=30)).text)
        assert call["name"] == "set_light" and call["arguments"] == {"room": "kitchen", "on": True}
        probe.publish("home/lights/result", json.dumps({"call_id": call["call_id"], "ok": True, "state": "on"}))

    try:
        await asyncio.wait_for(asyncio.gather(daemon.assistant.run(), home()), 90)
        await probe.wait_for("hark/kitchen/event", lambda m: json.loads(m.text)["event"] == "response_done")
    finally:
        await daemon.aclose()
    assert run.states() == ["listening", "processing", "responding", "idle"]
    record = server.record
    assert record.rejected == []
    assert record.count("stt") == 1 and record.count("llm") == 2
    assert [r["text"] for r in run.events("transcript") if r["role"] == "user"] == ["turn on the kitchen lights"]
    # the tool's result went back to the model, which then answered in words
    second = record.bodies("llm")[1]["messages"]
    tool_msgs = [m for m in second if m["role"] == "tool"]
    assert len(tool_msgs) == 1 and json.loads(tool_msgs[0]["content"])["state"] == "on"
    assert [t["function"]["name"] for t in record.bodies("llm")[0]["tools"]] == ["get_time", "set_light"]
    # the request uploaded is what followed the wake word (plus the pre-roll), not what came before it
    assert 0.8 <= record.audio_s[0] <= 4.0
    assert np.abs(out_pcm(tmp_path)).max() > 3000
    assert [r["text"] for r in run.events("transcript") if r["role"] == "assistant"] == ["The kitchen light is on."]
    stages = {r["stage"] for r in run.events("cascade_usage")}
    assert {"stt", "llm"} <= stages
    done = [json.loads(m.text) for m in probe.on("hark/kitchen/event") if '"response_done"' in m.text]
    assert done and done[0]["status"] == "completed" and done[0]["cost"] > 0 and done[0]["usage"]["llm_output"] > 0


async def test_follow_up_keeps_the_context(
    tmp_path: Path, speech: Speech, models_dir: Path, cascade_server: ThreadedCascadeServer
) -> None:
    server = cascade_server.server
    server.transcripts.extend(["what time is it", "and what day is it"])
    server.replies.extend([ChatReply("It is noon."), ChatReply("It is Tuesday.")])
    clip = speech.concat([*turn(speech), speech.espeak("And what day is it")], [1.0, 0.4, 3.0, 3.0])
    settings = make_settings(
        tmp_path,
        models_dir,
        speech.wav(clip, "cascade-follow"),
        cascade_server.url,
        audio={"realtime_pace": True},
        conversation={"followup_seconds": 3.0},
    )
    run = await run_once(settings, api_key=API_KEY)
    assert run.states()[:6] == ["listening", "processing", "responding", "listening", "processing", "responding"]
    assert run.states()[-1] == "idle" and len(run.events("wake_detected")) == 1
    second = server.record.bodies("llm")[1]["messages"]
    assert [(m["role"], m["content"]) for m in second[1:]] == [
        ("user", "what time is it"),
        ("assistant", "It is noon."),
        ("user", "and what day is it"),
    ]


async def test_barge_in_keeps_only_what_was_heard(
    tmp_path: Path, speech: Speech, models_dir: Path, cascade_server: ThreadedCascadeServer
) -> None:
    """Remote speech at 60 ms per character: the first sentence plays ~2.4 s, the story ~10 s; the second
    wake word comes ~3.5 s in. The next request's history holds the heard part only."""
    server = cascade_server.server
    first = "Once upon a time there lived an old fox."
    story = (
        f"{first} He lived in a hole under a big oak tree. Every night he went out to look for food. "
        "One night he met a bear."
    )
    server.transcripts.extend(["tell me a long story", "stop"])
    server.replies.extend([ChatReply(story), ChatReply("Okay.")])
    clip = speech.concat(turn(speech, "Tell me a long story") + turn(speech, "Stop"), [1.0, 0.4, 4.5, 0.3, 2.0])
    tts = {"model": "gpt-4o-mini-tts", "voice": "marin"}
    settings = make_settings(
        tmp_path, models_dir, speech.wav(clip, "cascade-barge"), cascade_server.url, tts, audio={"realtime_pace": True}
    )
    run = await run_once(settings, api_key=API_KEY)
    interrupted = run.first("interrupted")
    assert interrupted["reason"] == "barge-in"
    played = interrupted["played_ms"]
    assert 1000 < played < 8000
    assert run.states()[:5] == ["listening", "processing", "responding", "listening", "processing"]
    second = server.record.bodies("llm")[1]["messages"]
    kept = [m["content"] for m in second if m["role"] == "assistant"]
    assert len(kept) == 1
    assert kept[0].startswith(first)  # the first sentence was heard whole
    assert "bear" not in kept[0]  # the end of the story never played
    heard_ms = len(kept[0].rstrip("…")) * 60
    assert abs(heard_ms - played) < 1500  # what is kept is about what played


FAULTS = [
    pytest.param("stt", {"status": {"stt": 401}}, "auth", id="stt-401"),
    pytest.param("llm", {"status": {"llm": 429}}, "error", id="llm-429"),
    pytest.param("llm", {"status": {"llm": 503}}, "error", id="llm-503"),
    pytest.param("llm", {"slow_first_s": {"llm": 3.0}}, "timeout", id="llm-slow-first-token"),
    pytest.param("llm", {"drop": {"llm"}}, "dropped", id="llm-dropped-stream"),
    pytest.param("stt", {"drop": {"stt"}}, "dropped", id="stt-dropped-stream"),
    pytest.param("llm", {"malformed": {"llm"}}, "error", id="llm-malformed-chunk"),
    pytest.param("tts", {"status": {"tts": 503}}, "error", id="tts-503"),
    pytest.param("tts", {"drop": {"tts"}}, "dropped", id="tts-dropped-stream"),
]


@pytest.mark.parametrize(("stage", "faults", "reason"), FAULTS)
async def test_each_fault_is_spoken_and_the_daemon_returns_to_idle(
    tmp_path: Path,
    speech: Speech,
    models_dir: Path,
    cascade_server: ThreadedCascadeServer,
    stage: str,
    faults: dict[str, Any],
    reason: str,
) -> None:
    for name, value in faults.items():
        setattr(cascade_server.server.faults, name, value)
    clip = speech.concat(turn(speech), [1.0, 0.4, 2.0])
    tts = {"model": "gpt-4o-mini-tts"} if stage == "tts" else "piper"
    settings = make_settings(
        tmp_path, models_dir, speech.wav(clip, "cascade-fault"), cascade_server.url, tts, timeout_s=1.0
    )
    run = await run_once(settings, api_key=API_KEY)
    assert [r["reason"] for r in run.events("fallback")] == [reason]
    assert run.states()[-1] == "idle" and "responding" in run.states()
    assert np.abs(out_pcm(tmp_path)).max() > 3000  # the sentence was spoken
    errors = [r for r in run.events("error") if r["code"] == f"cascade_{stage}"]
    assert errors, run.events("error")


async def test_unknown_stream_events_are_skipped(
    tmp_path: Path, speech: Speech, models_dir: Path, cascade_server: ThreadedCascadeServer
) -> None:
    cascade_server.server.faults.unknown_event = {"stt", "llm"}
    clip = speech.concat(turn(speech), [1.0, 0.4, 2.0])
    settings = make_settings(tmp_path, models_dir, speech.wav(clip, "cascade-unknown"), cascade_server.url)
    run = await run_once(settings, api_key=API_KEY)
    assert run.events("fallback") == []
    assert run.states() == ["listening", "processing", "responding", "idle"]


async def test_unreachable_server_and_missing_key(
    tmp_path: Path, speech: Speech, models_dir: Path, cascade_server: ThreadedCascadeServer
) -> None:
    clip = speech.wav(speech.concat(turn(speech), [1.0, 0.4, 2.0]), "cascade-unreach")
    settings = make_settings(tmp_path, models_dir, clip, "http://127.0.0.1:9/v1", timeout_s=1.0)
    run = await run_once(settings, api_key=API_KEY)
    assert [r["reason"] for r in run.events("fallback")] == ["unreachable"]
    settings = make_settings(tmp_path, models_dir, clip, cascade_server.url)
    run = await run_once(settings, api_key="")
    assert [r["reason"] for r in run.events("fallback")] == ["no_api_key"]
    assert cascade_server.server.record.requests == []


async def test_no_request_leaves_before_a_wake_word(
    tmp_path: Path, speech: Speech, models_dir: Path, cascade_server: ThreadedCascadeServer
) -> None:
    """Privacy: two minutes of conversation without the wake word: not one request to any stage."""
    clip = speech.conversation_without_wake_word()
    assert clip.duration_s >= 120
    settings = make_settings(tmp_path, models_dir, speech.wav(clip, "cascade-privacy"), cascade_server.url)
    run: Run = await run_once(settings, api_key=API_KEY)
    assert run.events("wake_detected") == []
    assert run.events("cascade_request") == []
    assert cascade_server.server.record.requests == [] and cascade_server.server.record.t_received == []
