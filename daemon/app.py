"""Assembles the parts from settings and runs them: the only place that knows every concrete class.

The CLI only builds settings; this module wires audio, detectors, responder, MQTT, metrics and systemd
together, so `hark run`, `hark demo`, the tests and the benchmarks all run the very same daemon.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

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
from daemon.core.controller import Controller
from daemon.core.states import State
from daemon.listen.endpoint import Endpointer
from daemon.listen.gate import WakeGate
from daemon.listen.wake import WakeDetector
from daemon.mqtt.bridge import MqttBridge
from daemon.observe import events as ev
from daemon.observe.bus import EventBus
from daemon.observe.trace import Trace
from daemon.system import service, tasks

log = logging.getLogger(__name__)
Closer = Callable[[], Awaitable[None]]


@dataclass
class Daemon:
    """A running daemon: what `hark run` holds and what tests drive."""

    settings: Settings
    assistant: Assistant
    controller: Controller
    bus: EventBus
    trace: Trace
    tools: ToolRegistry
    bridge: MqttBridge | None = None
    closers: list[tuple[str, Closer]] = field(default_factory=list)
    """What aclose() runs, in this order: the assistant first (silence, state idle), then MQTT (so `offline`
    goes out promptly and nothing is published after it), then the slower audio and voice teardown."""

    async def aclose(self) -> None:
        for name, close in self.closers:
            try:
                await close()
            except Exception:  # closing must go on whatever one part does; say which one failed
                log.exception("closing %s failed; closing the rest", name)
        self.trace.close()


async def build(
    settings: Settings, secrets: Secrets, bus: EventBus | None = None, trace_path: str | None = None
) -> Daemon:
    """Load models, open audio, connect what is configured. Raises on what cannot work (missing models)."""
    bus = bus if bus is not None else EventBus()
    trace = Trace(bus, trace_path or settings.debug.trace or None)
    loop = asyncio.get_running_loop()
    detector = await loop.run_in_executor(None, WakeDetector, settings.wake, settings.models_dir)
    wake = WakeGate(detector, settings.wake) if settings.wake.gate == "vad" else detector
    voice = await _local_voice(settings)
    choices = ChoiceStore(
        settings.state_dir / "runtime.json",
        RuntimeChoices(muted=False, volume=settings.audio.volume, wake_enabled=settings.wake.enabled),
    )
    chimes = load_chimes(settings.chimes)
    sink = open_sink(settings.audio, bus)
    await sink.start()
    source = open_source(settings.audio, bus)
    tools = ToolRegistry(settings.tools)
    responder: Responder = (
        ChimeResponder(chimes.get("done") or builtin_chime("done"))
        if settings.conversation.responder == "chime"
        else make_responder(settings, secrets, bus, voice, tools)
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
    assistant = Assistant(settings, parts, bus)
    controller = Controller(assistant)
    daemon = Daemon(settings, assistant, controller, bus, trace, tools)
    daemon.closers.append(("the assistant", assistant.shutdown))
    if settings.mqtt.host:
        from daemon.mqtt.link import attach

        daemon.bridge = attach(
            settings, secrets, bus, controller, choices.current, assistant.sm.state, tools, wake.names
        )
        daemon.closers.append(("MQTT", daemon.bridge.stop))
    daemon.closers += [("the microphone", source.aclose), ("the speaker", sink.aclose)]
    if voice is not None:
        daemon.closers.append(("the local voice", voice.close))
    return daemon


def make_responder(
    settings: Settings, secrets: Secrets, bus: EventBus, voice: LocalVoice | None, tools: ToolRegistry
) -> CloudResponder:
    """The Realtime model answers; the local voice answers whenever it cannot (see daemon.answer.cloud)."""
    return CloudResponder(settings, secrets, bus, voice, tools)


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


async def run(settings: Settings, secrets: Secrets, trace_path: str | None = None) -> int:
    """`hark run`: build, tell systemd we are ready, run until the input ends or SIGTERM."""
    loop = asyncio.get_running_loop()
    tasks.install(loop)
    service.status("loading models and opening audio")
    bus = EventBus()
    bus.subscribe(ev.StateChanged, _status_line)
    daemon = await build(settings, secrets, bus, trace_path)
    watchdog = service.Watchdog()
    daemon.assistant.parts.on_frame.append(watchdog.pet)
    metrics = None
    if settings.metrics.port:
        from daemon.observe.metrics import Metrics

        metrics = Metrics(bus)
        metrics.start(settings.metrics.port, settings.metrics.host)
    main = asyncio.current_task()

    def on_term() -> None:
        service.stopping("stopping")
        if main is not None:
            main.cancel()

    signal_tasks = service.install_signal_handlers(loop, on_term)
    watchdog.start()
    idle_pets = tasks.spawn(_pet_while_capture_is_off(daemon.assistant, watchdog), "hark-watchdog-off")
    service.ready("listening for the wake word")
    status = 0
    try:
        status = await daemon.assistant.run()
    except asyncio.CancelledError:
        log.info("stopping: playback silenced, sessions closing")
    finally:
        idle_pets.cancel()
        await watchdog.stop()
        try:
            await asyncio.wait_for(daemon.aclose(), timeout=1.5)
        except asyncio.TimeoutError:
            log.warning("closing took longer than 1.5 s; exiting anyway")
            daemon.trace.close()
        if metrics is not None:
            metrics.stop()
        signal_tasks.clear()
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


def _status_line(event: ev.StateChanged) -> None:
    service.status(event.after + (f" ({event.reason})" if event.reason else ""))
