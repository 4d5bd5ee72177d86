"""Fast start: listening does not wait for the local voice or the cloud client, and nothing asked of them
early is lost — it waits for them."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

from daemon import app
from daemon.answer.deferred import DeferredResponder
from daemon.app import Daemon
from daemon.config.settings import Secrets, Settings
from daemon.observe.bus import EventBus
from tests.answer.test_local_voice_e2e import speech_seconds
from tests.harness import Run, settings_for, wait_for_event
from tests.records import record_into
from tests.speech import write_wav

SAY_AFTER_READY_S = 0.5


async def start_early(settings: Settings) -> tuple[Daemon, Run]:
    """build() as `hark run` calls it: it returns (and READY=1 goes out) once the wake model and audio are up."""
    run = Run()
    daemon = await app.build(settings, Secrets(), record_into(EventBus(), run.records.append), ready_early=True)
    return daemon, run


@pytest.mark.asyncio
async def test_a_say_half_a_second_after_ready_is_spoken_late_not_lost(tmp_path: Path, models_dir: Path) -> None:
    wav = tmp_path / "room.wav"
    write_wav(wav, np.zeros(12 * 16_000, dtype=np.int16))
    settings = settings_for(tmp_path, models_dir, wav, audio={"realtime_pace": True}, fallback={"load": "start"})
    daemon, run = await start_early(settings)
    voice = daemon.assistant.parts.voice
    assert voice is not None and not voice.loaded  # it loads in the background, after READY
    runner = asyncio.create_task(daemon.assistant.run())
    try:
        await asyncio.sleep(SAY_AFTER_READY_S)
        daemon.controller.say("Dinner is ready, come to the table.")
        await wait_for_event(run, "announcement", timeout_s=30)
        await wait_for_event(run, "state", timeout_s=30, to="idle", trigger="answer_done")
        assert voice.loaded
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await daemon.aclose()
    assert not run.events("error"), run.events("error")
    assert speech_seconds(tmp_path / "out.wav") > 0.8


@pytest.mark.asyncio
async def test_listening_starts_before_the_cloud_client_is_imported(tmp_path: Path, models_dir: Path) -> None:
    """build() returns without the openai SDK; the responder is built right after, in the background."""
    settings = settings_for(tmp_path, models_dir)
    daemon, _run = await start_early(settings)
    try:
        responder = daemon.assistant.parts.responder
        assert isinstance(responder, DeferredResponder)
        await asyncio.wait_for(responder.wait(), 30)
        assert "openai" in sys.modules
    finally:
        await daemon.aclose()
