"""Issue 5 end to end: the running daemon (real mic via the rig, real Mosquitto, the test Realtime server)
seen and driven over MQTT the way Home Assistant or Node-RED would."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from daemon.app import Daemon
from daemon.core.assistant import cancel_task
from tests.fixtures_audio import PulseRig
from tests.fixtures_mqtt import Broker, MqttProbe
from tests.fixtures_realtime import API_KEY
from tests.harness import Run, settings_for, start, wait_for_event
from tests.realtime_server import Reply, ThreadedRealtimeServer, tone
from tests.speech import Speech

BASE = "hark/kitchen"


@dataclass
class Live:
    daemon: Daemon
    run: Run
    probe: MqttProbe
    server: ThreadedRealtimeServer


@pytest.fixture
async def live(
    tmp_path: Path,
    pulse_rig: PulseRig,
    models_dir: Path,
    mosquitto: Broker,
    mqtt_probe,
    realtime_server: ThreadedRealtimeServer,
) -> AsyncIterator[Live]:
    settings = settings_for(
        tmp_path,
        models_dir,
        None,
        audio={"input": "default"},
        realtime={"url": realtime_server.url},
        mqtt={"host": "127.0.0.1", "port": mosquitto.port, "device_id": "kitchen", "publish_transcripts": True},
        tools=[
            {
                "name": "set_light",
                "description": "Switch a light",
                "parameters": {"type": "object", "properties": {"room": {"type": "string"}, "on": {"type": "boolean"}}},
                "mqtt_topic": "home/lights/set",
                "response_topic": "home/lights/result",
            }
        ],
    )
    probe = mqtt_probe(mosquitto.port)
    probe.subscribe(f"{BASE}/#")
    probe.subscribe("home/lights/set")
    daemon, run = await start(settings, api_key=API_KEY)
    task = asyncio.create_task(daemon.assistant.run())
    try:
        await probe.wait_for(f"{BASE}/availability", lambda m: m.text == "online")
        yield Live(daemon, run, probe, realtime_server)
    finally:
        await cancel_task(task)
        await daemon.aclose()


def events(probe: MqttProbe, name: str) -> list[dict]:
    return [json.loads(m.text) for m in probe.on(f"{BASE}/event") if json.loads(m.text).get("event") == name]


async def test_wake_word_turn_is_visible_over_mqtt(live: Live, pulse_rig: PulseRig, speech: Speech) -> None:
    live.server.server.default_reply = Reply(audio=tone(800))
    clip = speech.concat([speech.espeak("Hey Jarvis"), speech.espeak("What time is it")], [1.0, 0.4, 1.5])
    await pulse_rig.mic_opened()  # the clip's leading second of silence covers capture's start-up
    player = pulse_rig.start_play_into_mic(speech.wav(clip, "mqtt-turn"))
    for state in ("listening", "processing", "responding"):
        await live.probe.wait_for(f"{BASE}/state", lambda m, s=state: m.text == s)
    await wait_for_event(live.run, "state", timeout_s=20, to="idle")
    player.wait(timeout=10)
    await live.probe.wait_for(f"{BASE}/state", lambda m: m.text == "idle")
    await live.probe.wait_for(f"{BASE}/event", lambda m: json.loads(m.text)["event"] == "response_done")
    wake = events(live.probe, "wake_detected")[0]
    assert wake["model"] == "hey_jarvis" and wake["score"] >= 0.5
    done = events(live.probe, "response_done")[0]
    assert done["cost"] > 0 and done["usage"]["output_audio"] > 0
    assert float((await live.probe.wait_for(f"{BASE}/last_cost")).text) == pytest.approx(done["cost"], abs=1e-6)
    assert any(e["role"] == "assistant" for e in events(live.probe, "transcript"))


async def test_commands_drive_the_speaker(live: Live, pulse_rig: PulseRig) -> None:
    probe, run = live.probe, live.run
    # volume: applied to the sink, retained for Home Assistant
    probe.publish(f"{BASE}/cmd/volume", "35")
    await probe.wait_for(f"{BASE}/volume", lambda m: m.text == "35")
    assert live.daemon.assistant.parts.sink.volume == 35
    # a bad payload is refused with an error naming the topic; the speaker goes on
    probe.publish(f"{BASE}/cmd/volume", "250")
    err = await probe.wait_for(f"{BASE}/event", lambda m: json.loads(m.text)["event"] == "error")
    assert "cmd/volume" in json.loads(err.text)["message"]
    # mute: capture really stops (no stream open on the mic), and comes back on unmute
    probe.publish(f"{BASE}/cmd/mute", "ON")
    await probe.wait_for(f"{BASE}/state", lambda m: m.text == "muted")
    await probe.wait_for(f"{BASE}/mute", lambda m: m.text == "ON")
    await _until(lambda: pulse_rig.capture_streams() == 0, "the mic to be released")
    probe.publish(f"{BASE}/cmd/mute", "OFF")
    await probe.wait_for(f"{BASE}/state", lambda m: m.text == "idle")
    await _until(lambda: pulse_rig.capture_streams() >= 1, "the mic to be reopened")
    # say: spoken with the local voice
    probe.publish(f"{BASE}/cmd/say", json.dumps({"text": "Dinner is ready", "priority": False}))
    said = await wait_for_event(run, "announcement", timeout_s=10)
    assert said["text"] == "Dinner is ready"
    await wait_for_event(run, "state", timeout_s=20, to="idle", trigger="answer_done")
    # listen: a turn without the wake word (nobody speaks → back to idle)
    probe.publish(f"{BASE}/cmd/listen", "PRESS")
    await probe.wait_for(f"{BASE}/state", lambda m: m.text == "listening")
    await wait_for_event(run, "no_speech", timeout_s=15)
    # wake off: persisted and retained
    probe.publish("hark/all/cmd/wake", "OFF")
    await probe.wait_for(f"{BASE}/wake", lambda m: m.text == "OFF")
    assert live.daemon.assistant.sm.wake_enabled is False


async def test_ask_with_a_tool_call_through_mqtt(live: Live) -> None:
    """ "Turn on the kitchen lights": the model's call goes out on home/lights/set, the home's reply comes back."""
    live.server.replies.extend(
        [Reply(function_call=("set_light", '{"room": "kitchen", "on": true}')), Reply(audio=tone(600))]
    )
    live.probe.publish(f"{BASE}/cmd/ask", "Turn on the kitchen lights")
    call = json.loads((await live.probe.wait_for("home/lights/set", timeout_s=15)).text)
    assert call["name"] == "set_light" and call["arguments"] == {"room": "kitchen", "on": True}
    live.probe.publish("home/lights/result", json.dumps({"call_id": call["call_id"], "ok": True, "state": "on"}))
    await wait_for_event(live.run, "state", timeout_s=20, to="idle")
    outputs = [i for i in live.server.record.items if i.get("type") == "function_call_output"]
    assert outputs and json.loads(outputs[0]["output"])["state"] == "on"
    assert live.server.record.errors == []
    asked = [r for r in live.run.events("transcript") if r["role"] == "user"]
    assert [r["text"] for r in asked] == ["Turn on the kitchen lights"]  # recorded once, not twice


async def _until(pred, what: str, timeout_s: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)
