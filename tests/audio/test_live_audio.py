"""The daemon on the real audio rig: speech played into the PulseAudio "mic", the answer recorded from the
"speaker" monitor — real PyAudio streams both ways, nothing in between faked but the cloud model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from daemon.core.assistant import cancel_task
from tests.fixtures_audio import PulseRig
from tests.fixtures_realtime import API_KEY
from tests.harness import settings_for, start, wait_for_event
from tests.realtime_server import Reply, ThreadedRealtimeServer, tone
from tests.speech import Speech


async def test_spoken_request_through_the_rig_is_answered_on_the_speaker(
    tmp_path: Path, pulse_rig: PulseRig, speech: Speech, models_dir: Path, realtime_server: ThreadedRealtimeServer
) -> None:
    realtime_server.server.default_reply = Reply(audio=tone(1500, freq_hz=660.0))
    clip = speech.concat([speech.espeak("Hey Jarvis"), speech.espeak("What time is it")], [1.0, 0.4, 1.5])
    settings = settings_for(
        tmp_path,
        models_dir,
        None,
        audio={"input": "default", "output": "default"},
        realtime={"url": realtime_server.url},
    )
    daemon, run = await start(settings, api_key=API_KEY)
    task = asyncio.create_task(daemon.assistant.run())
    recording = pulse_rig.record_speaker(tmp_path / "speaker.raw")
    try:
        await pulse_rig.mic_opened()  # the clip's leading second of silence covers capture's start-up
        player = pulse_rig.start_play_into_mic(speech.wav(clip, "live-1"))
        await wait_for_event(run, "playback_stopped", timeout_s=30, reason="drained")
        await wait_for_event(run, "state", timeout_s=10, to="idle")
        player.wait(timeout=10)
    finally:
        heard = recording.stop()
        await cancel_task(task)
        await daemon.aclose()
    assert run.states() == ["listening", "processing", "responding", "idle"]
    assert run.first("wake_detected")["model"] == "hey_jarvis"
    # the 660 Hz reply came out of the speaker, about 1.5 s of it
    frames = heard[: len(heard) // 320 * 320].astype(np.float64).reshape(-1, 320)
    loud_s = (np.sqrt((frames**2).mean(axis=1)) > 1000).sum() * 0.02
    assert 1.3 <= loud_s <= 1.7, loud_s
    spectrum = np.abs(np.fft.rfft(heard.astype(np.float64)))
    assert abs(np.argmax(spectrum) * 16000 / len(heard) - 660) < 15
