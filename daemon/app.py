"""Assembles the parts from settings and runs them: the only place that knows every concrete class.

The CLI only builds settings; this module wires audio, detectors, responder, MQTT, metrics and systemd
together, so `hark run`, `hark demo`, the tests and the benchmarks all run the very same daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from daemon.answer.cloud import CloudResponder
from daemon.answer.responder import ChimeResponder, Responder
from daemon.answer.tools import ToolRegistry
from daemon.answer.voice import LocalVoice, VoiceError
from daemon.audio.chimes import builtin_chime, load_chimes
from daemon.audio.sink import open_sink
from daemon.audio.source import open_source
from daemon.config.settings import Secrets, Settings
from daemon.core.assistant import Assistant, Parts
from daemon.core.choices import ChoiceStore, RuntimeChoices
from daemon.core.states import State
from daemon.listen.endpoint import Endpointer
from daemon.listen.wake import WakeDetector
from daemon.observe.trace import Trace
from daemon.system import service

log = logging.getLogger(__name__)


@dataclass
class Daemon:
    """A running daemon: what `hark run` holds and what tests drive."""

    settings: Settings
    assistant: Assistant
    trace: Trace
    tools: ToolRegistry
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def aclose(self) -> None:
        for close in reversed(self.closers):
            try:
                await close()
            except Exception as e:  # closing must go on whatever one part does
                log.warning("while closing: %s", e)
        self.trace.close()


async def build(settings: Settings, secrets: Secrets, trace: Trace) -> Daemon:
    """Load models, open audio, connect what is configured. Raises on what cannot work (missing models)."""
    loop = asyncio.get_running_loop()
    closers: list[Callable[[], Awaitable[None]]] = []
    wake = await loop.run_in_executor(None, WakeDetector, settings.wake, settings.models_dir)
    voice = await _local_voice(settings)
    if voice is not None:
        closers.append(voice.close)
    choices = ChoiceStore(
        settings.state_dir / "runtime.json",
        RuntimeChoices(muted=False, volume=settings.audio.volume, wake_enabled=settings.wake.enabled),
    )
    chimes = load_chimes(settings.chimes)
    sink = open_sink(settings.audio, trace)
    await sink.start()
    closers.append(sink.aclose)
    source = open_source(settings.audio, trace)
    closers.append(source.aclose)
    tools = ToolRegistry(settings.tools)
    responder: Responder = (
        ChimeResponder(chimes.get("done") or builtin_chime("done"))
        if settings.conversation.responder == "chime"
        else make_responder(settings, secrets, trace, voice, tools)
    )
    parts = Parts(
        source=source,
        sink=sink,
        wake=wake,
        endpointer=Endpointer(settings.endpoint),
        responder=responder,
        voice=voice,
        chimes=chimes,
        choices=choices,
    )
    assistant = Assistant(settings, parts, trace)
    closers.append(assistant.shutdown)
    daemon = Daemon(settings, assistant, trace, tools, closers)
    await _attach_mqtt(daemon, secrets, wake.names)
    return daemon


def make_responder(
    settings: Settings, secrets: Secrets, trace: Trace, voice: LocalVoice | None, tools: ToolRegistry
) -> CloudResponder:
    """The Realtime model answers; the local voice answers whenever it cannot (see daemon.answer.cloud)."""
    return CloudResponder(settings, secrets, trace, voice, tools)


async def _local_voice(settings: Settings) -> LocalVoice | None:
    voice = LocalVoice(settings.fallback, settings.models_dir)
    if settings.fallback.load == "lazy":
        return voice
    try:
        await voice.load()
    except VoiceError as e:
        log.error("local voice unavailable: %s; offline answers and announcements are off", e)
        await voice.close()
        return None
    return voice


async def _attach_mqtt(daemon: Daemon, secrets: Secrets, wake_names: list[str]) -> None:
    if not daemon.settings.mqtt.host:
        return
    from daemon.mqtt.link import attach

    await attach(daemon, secrets, wake_names)


async def run(settings: Settings, secrets: Secrets, trace_path: str | None = None) -> int:
    """`hark run`: build, tell systemd we are ready, run until the input ends or SIGTERM."""
    trace = Trace(trace_path or settings.debug.trace or None)
    service.status("loading models and opening audio")
    daemon = await build(settings, secrets, trace)
    watchdog = service.Watchdog()
    daemon.assistant.parts.on_frame.append(watchdog.pet)
    trace.subscribe(_status_line)
    metrics = None
    if settings.metrics.port:
        from daemon.observe.metrics import Metrics

        metrics = Metrics(trace)
        metrics.start(settings.metrics.port, settings.metrics.host)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_term() -> None:
        service.stopping("stopping")
        if main is not None:
            main.cancel()

    tasks = service.install_signal_handlers(loop, on_term)
    watchdog.start()
    idle_pets = asyncio.create_task(_pet_while_capture_is_off(daemon.assistant, watchdog), name="hark-watchdog-off")
    service.ready("listening for the wake word")
    status = 0
    try:
        status = await daemon.assistant.run()
    except asyncio.CancelledError:
        log.info("stopping: playback silenced, sessions closing")
    finally:
        idle_pets.cancel()
        await watchdog.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(daemon.aclose(), timeout=1.5)
        if metrics is not None:
            metrics.stop()
        tasks.clear()
    return status


async def _pet_while_capture_is_off(assistant: Assistant, watchdog: service.Watchdog) -> None:
    """Muted, or the microphone is gone and being reopened: no frames flow, by design. The watchdog is then
    fed by the loop itself, so a blocked loop is still caught but a muted speaker is not restarted."""
    if not watchdog.enabled:
        return
    while True:
        await asyncio.sleep(watchdog.interval_s / 4)
        if assistant.sm.state in (State.MUTED, State.ERROR):
            watchdog.pet()


def _status_line(record: dict[str, Any]) -> None:
    if record["event"] == "state":
        service.status(f"{record['to']}" + (f" ({record['reason']})" if record.get("reason") else ""))
