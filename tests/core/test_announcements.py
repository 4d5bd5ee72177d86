"""Announcements through the running daemon (real Piper voice, paced WAV in and out): one owner, a bounded
queue, `stop` that stops everything, priority that pre-empts whatever plays — muted or not — and a synthesis
failure that ends only its own announcement (issue 10, defects 1–3 and 8)."""

from __future__ import annotations

import asyncio
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from daemon.app import Daemon
from daemon.core.assistant import cancel_task
from daemon.system import tasks
from tests.harness import Run, settings_for, start, wait_for_event

LONG = " ".join(f"This is sentence number {n} of a very long announcement." for n in range(1, 60))


def silent_wav(path: Path, seconds: float) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(int(16000 * seconds) * 2))
    return path


@dataclass
class Speaker:
    daemon: Daemon
    run: Run
    task: asyncio.Task[int]

    def say(self, text: str, priority: bool = False) -> None:
        self.daemon.controller.say(text, priority)

    def announced(self) -> list[str]:
        return [r["text"] for r in self.run.events("announcement")]

    async def marker(self, n: int) -> dict[str, Any]:
        """Change the volume and wait for it: every command before it has been handled."""
        self.daemon.controller.set_volume(n)
        return await wait_for_event(self.run, "volume", percent=n, timeout_s=10)


@pytest.fixture
async def speaker(tmp_path: Path, models_dir: Path) -> AsyncIterator[Speaker]:
    settings = settings_for(
        tmp_path,
        models_dir,
        silent_wav(tmp_path / "quiet.wav", 120),
        audio={"realtime_pace": True},
        announcements={"queue_size": 4},
    )
    failures = tasks.supervisor.failures
    daemon, run = await start(settings)
    task = asyncio.create_task(daemon.assistant.run())
    try:
        yield Speaker(daemon, run, task)
    finally:
        await cancel_task(task)
        await daemon.aclose()
    assert tasks.supervisor.failures == failures, "a background task died"


async def test_an_unspeakable_announcement_says_why_and_the_next_one_plays(speaker: Speaker) -> None:
    speaker.say("Dinner\x00 is ready")  # Piper refuses a NUL character
    speaker.say("The laundry is done.")
    error = await wait_for_event(speaker.run, "error", code="announcement_failed", timeout_s=20)
    assert "Dinner" in error["message"] and "null character" in error["message"]
    await wait_for_event(speaker.run, "playback_stopped", reason="drained", timeout_s=20)
    assert speaker.announced() == ["Dinner\x00 is ready", "The laundry is done."]
    await wait_for_event(speaker.run, "state", to="idle", count=2, timeout_s=10)
    assert speaker.daemon.assistant.sm.state.value == "idle"


async def test_stop_empties_the_queue_and_silences_the_one_playing(speaker: Speaker) -> None:
    for n in range(20):
        speaker.say(f"Announcement number {n}. " + LONG[:200])
    await wait_for_event(speaker.run, "playback_started", timeout_s=20)
    speaker.daemon.controller.stop()
    interrupted = await wait_for_event(speaker.run, "interrupted", reason="stop command", timeout_s=10)
    await speaker.marker(55)
    refused = [r for r in speaker.run.events("error") if r["code"] == "command_refused"]
    assert len(refused) == 20 - 1 - 4  # one playing, four queued (announcements.queue_size), the rest refused
    assert all("announcements.queue_size" in r["message"] for r in refused)
    await asyncio.sleep(0.5)  # the marker came after the stop: anything still queued would have started now
    await speaker.marker(56)
    assert speaker.announced() == ["Announcement number 0. " + LONG[:200]]
    assert interrupted["played_ms"] < 5000
    assert speaker.daemon.assistant.sm.state.value == "idle"


async def test_a_long_announcement_stops_at_once(speaker: Speaker) -> None:
    speaker.say(LONG * 3)  # ~4,000 characters: minutes of speech
    await wait_for_event(speaker.run, "playback_started", timeout_s=30)
    speaker.daemon.controller.stop()
    stopped = await wait_for_event(speaker.run, "playback_stopped", reason="stopped", timeout_s=5)
    assert stopped["played_ms"] < 5000
    await speaker.marker(57)
    assert len(speaker.announced()) == 1


async def test_muted_announcements_can_be_stopped_and_a_priority_one_preempts(speaker: Speaker) -> None:
    speaker.daemon.controller.set_mute(True)
    await wait_for_event(speaker.run, "state", to="muted", timeout_s=10)
    speaker.say(LONG)
    await wait_for_event(speaker.run, "playback_started", timeout_s=20)
    speaker.daemon.controller.stop()
    await wait_for_event(speaker.run, "interrupted", reason="stop command", timeout_s=10)

    speaker.say(LONG)
    speaker.say("Fire alarm in the kitchen.", priority=True)
    await wait_for_event(speaker.run, "announcement", count=3, timeout_s=20)
    await wait_for_event(speaker.run, "interrupted", reason="priority announcement", timeout_s=10)
    assert speaker.announced()[-1] == "Fire alarm in the kitchen."
    await wait_for_event(speaker.run, "playback_stopped", reason="drained", timeout_s=20)
    assert set(speaker.run.states()) == {"muted"}  # the state said muted all along
    assert speaker.daemon.assistant.sm.state.value == "muted"


async def test_shutdown_mid_announcement_leaves_the_state_idle(speaker: Speaker) -> None:
    speaker.say(LONG)
    await wait_for_event(speaker.run, "state", to="responding", timeout_s=20)
    await speaker.daemon.aclose()
    assert speaker.run.states()[-1] == "idle"
    assert speaker.run.events("interrupted")[-1]["reason"] == "shutdown"
