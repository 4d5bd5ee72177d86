"""Issue 13 end to end: the whole daemon on spoken requests, with real Mosquitto and the test Realtime server.

offline: the Realtime endpoint refuses → the command's tool payload is on the broker and the confirmation is
spoken (no apology). first: a command never reaches the cloud (0 appends); anything else reaches it with
exactly the audio it would have had with local commands off.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np

from tests.fixtures_mqtt import Broker
from tests.fixtures_realtime import API_KEY
from tests.harness import Run, run_once, settings_for, start
from tests.intents.household import CONFIG
from tests.realtime_server import Reply, ThreadedRealtimeServer, tone
from tests.speech import Speech, read_wav

BASE = "hark/kitchen"


def request(speech: Speech, text: str, name: str) -> Path:
    clip = speech.concat([speech.espeak("Hey Jarvis"), speech.piper(text)], [0.5, 0.5, 1.5])
    return speech.wav(clip, name)


def household_settings(tmp: Path, models_dir: Path, wav: Path, local: str, url: str, **extra: Any):  # noqa: ANN201
    return settings_for(
        tmp,
        models_dir,
        wav,
        realtime={"url": url},
        tools=CONFIG["tools"],
        commands={**CONFIG["commands"], "local": local},
        **extra,
    )


async def test_offline_a_command_is_carried_out_and_confirmed(
    tmp_path: Path, models_dir: Path, speech: Speech, mosquitto: Broker, mqtt_probe, closed_port_url: str
) -> None:
    wav = request(speech, "turn on the kitchen lights", "cmd-offline-kitchen")
    mqtt = {"host": "127.0.0.1", "port": mosquitto.port, "device_id": "kitchen"}
    settings = household_settings(tmp_path, models_dir, wav, "offline", closed_port_url, mqtt=mqtt)
    probe = mqtt_probe(mosquitto.port)
    probe.subscribe("home/#")
    probe.subscribe(f"{BASE}/#")
    daemon, run = await start(settings, api_key=API_KEY)
    try:
        await probe.wait_for(f"{BASE}/availability", lambda m: m.text == "online")
        run.status = await asyncio.wait_for(daemon.assistant.run(), 60)
        call = json.loads((await probe.wait_for("home/lights/set", timeout_s=10)).text)
        last = json.loads((await probe.wait_for(f"{BASE}/last_command", timeout_s=10)).text)
    finally:
        await daemon.aclose()
    assert call["name"] == "set_light" and call["arguments"] == {"room": "kitchen", "on": True}
    assert call["call_id"].startswith("local_")
    recognized = run.first("command_recognized")
    assert recognized["intent"] == "lights" and recognized["slots"] == {"room": "kitchen", "state": True}
    assert last["intent"] == "lights" and last["slots"] == {"room": "kitchen", "state": True}
    assert not run.events("fallback"), "the apology was spoken instead of the confirmation"
    assert "answer_done" in [r.get("trigger") for r in run.events("state")]
    spoken, _ = read_wav(tmp_path / "out.wav")
    assert len(spoken) > 16000 * 0.5, "no confirmation was spoken"


async def test_offline_anything_else_gets_the_apology(
    tmp_path: Path, models_dir: Path, speech: Speech, closed_port_url: str
) -> None:
    wav = request(speech, "tell me a joke", "cmd-offline-joke")
    run = await run_once(household_settings(tmp_path, models_dir, wav, "offline", closed_port_url), API_KEY, 60)
    assert run.first("fallback")["reason"] == "unreachable"
    assert not run.events("command_recognized")


async def _through_server(
    tmp_path: Path, models_dir: Path, wav: Path, local: str, server: ThreadedRealtimeServer
) -> tuple[Run, int, bytes]:
    """One run; the appends and the audio the server received during it."""
    appends, audio_at = server.record.count("input_audio_buffer.append"), len(server.record.audio)
    (tmp_path / local).mkdir()
    run = await run_once(household_settings(tmp_path / local, models_dir, wav, local, server.url), API_KEY, 60)
    await asyncio.sleep(0)  # the server thread appends its record before it answers; nothing more to wait for
    return run, server.record.count("input_audio_buffer.append") - appends, bytes(server.record.audio[audio_at:])


async def test_first_a_command_never_reaches_the_cloud(
    tmp_path: Path, models_dir: Path, speech: Speech, realtime_server: ThreadedRealtimeServer
) -> None:
    realtime_server.server.default_reply = Reply(audio=tone(600))
    wav = request(speech, "set a timer for ten minutes", "cmd-first-timer")
    run, appends, _ = await _through_server(tmp_path, models_dir, wav, "first", realtime_server)
    assert run.first("command_recognized")["slots"] == {"minutes": 10}
    assert appends == 0
    assert realtime_server.record.commits == [] and realtime_server.record.responses == []


async def test_first_anything_else_reaches_the_cloud_with_the_same_audio(
    tmp_path: Path, models_dir: Path, speech: Speech, realtime_server: ThreadedRealtimeServer
) -> None:
    realtime_server.server.default_reply = Reply(audio=tone(600))
    wav = request(speech, "how far away is the moon", "cmd-first-question")
    off, off_appends, off_audio = await _through_server(tmp_path, models_dir, wav, "off", realtime_server)
    first, first_appends, first_audio = await _through_server(tmp_path, models_dir, wav, "first", realtime_server)
    assert not first.events("command_recognized")
    assert first_appends > 0 and len(first_audio) == len(off_audio)
    # the same samples; the 16 → 24 kHz resampler is fed other chunk sizes when the audio is flushed at once,
    # which moves a sample by at most a few LSB (-80 dBFS), nothing a model hears
    a, b = (np.frombuffer(x, dtype=np.int16).astype(np.int32) for x in (first_audio, off_audio))
    assert int(np.abs(a - b).max()) <= 4
    for run in (off, first):
        assert run.events("response_done") and not run.events("fallback")
