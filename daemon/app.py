"""Assembles the parts from settings and runs them: the only place that knows every concrete class.

The CLI only builds settings; this module wires audio, detectors, responder, MQTT, metrics and systemd
together, so `hark run`, `hark demo`, the tests and the benchmarks all run the very same daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from daemon.answer.deferred import DeferredResponder
from daemon.answer.responder import ChimeResponder, Responder
from daemon.answer.tools import ToolRegistry
from daemon.answer.voice import LocalVoice, VoiceError
from daemon.audio.chimes import builtin_chime, load_chimes
from daemon.audio.echo import FarEnd
from daemon.audio.sink import AudioSink, open_sink
from daemon.audio.source import open_source
from daemon.config.models import ModelError, piper_voice_path, turn_model_path
from daemon.config.settings import Secrets, Settings
from daemon.core.assistant import Assistant, Parts, cancel_task
from daemon.core.choices import ChoiceStore, RuntimeChoices
from daemon.core.controller import Controller
from daemon.core.states import State
from daemon.listen.gate import WakeGate
from daemon.listen.turn import TurnDetector, load_turn_model, load_turn_words
from daemon.listen.wake import WakeDetector
from daemon.observe import events as ev
from daemon.observe.bus import EventBus
from daemon.observe.trace import Trace
from daemon.system import service, tasks

if TYPE_CHECKING:  # paho and the openai SDK are imported when they are used, not before READY=1
    from daemon.answer.cascade.responder import CascadeResponder
    from daemon.answer.realtime.responder import RealtimeResponder
    from daemon.mqtt.bridge import MqttBridge

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
    loading: asyncio.Task[None] | None = None
    """The background loads after READY=1 (cloud responder, local voice)."""
    """What aclose() runs, in this order: the assistant first (silence, state idle), then MQTT (so `offline`
    goes out promptly and nothing is published after it), then the slower audio and voice teardown."""

    async def aclose(self) -> None:
        for name, close in self.closers:
            t0 = time.monotonic()
            try:
                await close()
            except Exception:  # closing must go on whatever one part does; say which one failed
                log.exception("closing %s failed; closing the rest", name)
            log.debug("closed %s in %.0f ms", name, (time.monotonic() - t0) * 1000)
        self.trace.close()


async def build(
    settings: Settings,
    secrets: Secrets,
    bus: EventBus | None = None,
    trace_path: str | None = None,
    *,
    ready_early: bool = False,
) -> Daemon:
    """Load the wake model, open audio, connect what is configured. Raises on what cannot work (missing models).

    `ready_early` (`hark run`): return as soon as listening can start; the cloud responder (the openai SDK's
    imports) and the local voice are built in the background right after, and whatever needs them first
    waits for them. Otherwise (tests, demo, benchmarks) they are built before this returns."""
    started = time.monotonic()
    bus = bus if bus is not None else EventBus()
    trace = Trace(bus, trace_path or settings.debug.trace or None)
    loop = asyncio.get_running_loop()
    # what the speaker plays, the echo canceller's reference (a wav: input holds no echo of this run)
    live_mic = not settings.audio.input.startswith("wav:")
    echo_ref = FarEnd() if settings.audio.echo_cancel != "off" and live_mic else None
    # The speaker opens and settles (~1.5 s with PulseAudio) in the background: listening does not need it,
    # and whatever plays before it is up waits in its buffer.
    sink = open_sink(settings.audio, bus, echo_ref)
    sink_up = tasks.spawn(_timed(sink.start(), "speaker"), "hark-sink-start")
    try:
        detector = await loop.run_in_executor(None, WakeDetector, settings.wake, settings.models_dir)
    except BaseException:
        await cancel_task(sink_up)
        await sink.aclose()
        raise
    wake = WakeGate(detector, settings.wake) if settings.wake.gate == "vad" else detector
    endpoint = settings.endpoint
    if settings.realtime.turn_detection != "local" and settings.conversation.backend == "realtime":
        # the server's VAD ends the turn: ending it sooner here would stop the audio before the server has
        # heard the silence it waits for, and nobody would answer
        endpoint = endpoint.model_copy(update={"turn_model": "none"})
    turn_model = await loop.run_in_executor(None, load_turn_model, endpoint, turn_model_path(settings.models_dir))
    wake_s = time.monotonic() - started
    voice = _local_voice(settings)
    choices = ChoiceStore(
        settings.state_dir / "runtime.json",
        RuntimeChoices(muted=False, volume=settings.audio.volume, wake_enabled=settings.wake.enabled),
    )
    chimes = load_chimes(settings.chimes)
    source = open_source(settings.audio, bus, echo_ref)
    tools = ToolRegistry(settings.tools)
    responder: Responder = (
        ChimeResponder(chimes.get("done") or builtin_chime("done"))
        if settings.conversation.responder == "chime"
        else DeferredResponder(lambda: _cloud_responder(settings, secrets, bus, voice, tools))
    )
    parts = Parts(
        source=source,
        sink=sink,
        wake=wake,
        endpointer=TurnDetector(endpoint, turn_model),
        responder=responder,
        voice=voice,
        chimes=chimes,
        choices=choices,
    )
    assistant = Assistant(settings, parts, bus)
    controller = Controller(assistant)
    daemon = Daemon(settings, assistant, controller, bus, trace, tools)
    daemon.closers.append(("the assistant", assistant.shutdown))
    daemon.closers.append(("the turn words", parts.endpointer.aclose))
    if settings.mqtt.host:
        from daemon.mqtt.link import arbiter_for, attach

        daemon.bridge = attach(
            settings, secrets, bus, controller, choices.current, assistant.sm.state, tools, wake.names
        )
        parts.arbiter = arbiter_for(settings, daemon.bridge)
        daemon.closers.append(("MQTT", daemon.bridge.stop))
    daemon.closers += [("the microphone", source.aclose), ("the speaker", lambda: _close_sink(sink_up, sink))]
    if voice is not None:
        daemon.closers.append(("the local voice", voice.close))
    words_for = parts.endpointer if turn_model is not None and endpoint.turn_words != "none" else None
    loading = tasks.spawn(
        _load_after(responder, voice if settings.fallback.load == "start" else None, words_for), "hark-loads"
    )
    daemon.loading = loading
    if not ready_early:
        await asyncio.gather(sink_up, loading)
    log.info("listening parts up in %.2f s (wake models %.2f s)", time.monotonic() - started, wake_s)
    return daemon


def make_responder(
    settings: Settings, secrets: Secrets, bus: EventBus, voice: LocalVoice | None, tools: ToolRegistry
) -> Responder:
    """The model backend (conversation.backend) answers; the local voice answers whenever it cannot:
    "realtime" = the Realtime API (daemon.answer.realtime.responder), "cascade" = speech-to-text → chat model → voice
    through OpenAI-compatible servers (daemon.answer.cascade). With commands.local on, the household's declared
    commands are understood on the device too (daemon.intents), in front of either backend."""
    backend: RealtimeResponder | CascadeResponder
    if settings.conversation.backend == "cascade":
        from daemon.answer.cascade.responder import CascadeResponder

        backend = CascadeResponder(settings, secrets, bus, voice, tools)
    else:
        from daemon.answer.realtime.responder import RealtimeResponder

        backend = RealtimeResponder(settings, secrets, bus, voice, tools)
    if settings.commands.local == "off" or not settings.commands.intents:
        return backend
    from daemon.intents.responder import CommandResponder  # pocketsphinx and hassil only when used

    return CommandResponder(settings.commands, backend, tools, voice, bus)


async def _timed(work: Awaitable[None], what: str) -> None:
    started = time.monotonic()
    await work
    log.info("%s up in %.2f s", what, time.monotonic() - started)


async def _close_sink(starting: asyncio.Task[None], sink: AudioSink) -> None:
    await cancel_task(starting)
    await sink.aclose()


async def _cloud_responder(
    settings: Settings, secrets: Secrets, bus: EventBus, voice: LocalVoice | None, tools: ToolRegistry
) -> Responder:
    """Background, right after start: the openai SDK is imported in a worker thread, off the loop."""
    backend = "cascade" if settings.conversation.backend == "cascade" else "realtime"
    module = f"daemon.answer.{backend}.responder"
    await asyncio.get_running_loop().run_in_executor(None, importlib.import_module, module)
    return make_responder(settings, secrets, bus, voice, tools)


def _local_voice(settings: Settings) -> LocalVoice | None:
    """The voice object now (its files are checked here, so a missing voice is reported at start and
    announcements say so at once); the model itself loads in the background (`_load_voice`) or on first use."""
    try:
        piper_voice_path(settings.fallback.voice, settings.models_dir)
    except ModelError as e:
        log.error("local voice unavailable: %s; offline answers and announcements are off", e)
        return None
    return LocalVoice(settings.fallback, settings.models_dir)


async def _load_after(responder: Responder, voice: LocalVoice | None, turn: TurnDetector | None) -> None:
    """Right after READY=1, one after the other (a 2-core board also has to keep listening): the cloud
    responder, then the voice (fallback.load = "start"), then the end-of-turn word recognizer (~0.3 s; until
    it is there the turn model decides alone). Whatever needs the first two before waits for them."""
    if isinstance(responder, DeferredResponder):
        with contextlib.suppress(Exception):  # its own task logs a failure
            await responder.wait()
    if voice is not None:
        try:
            await voice.load()
        except VoiceError as e:
            log.error("local voice unavailable: %s; offline answers and announcements will fail", e)
    if turn is not None:
        words = await asyncio.get_running_loop().run_in_executor(None, load_turn_words, turn.settings)
        if words is not None:
            turn.use_words(words)


async def run(settings: Settings, secrets: Secrets, trace_path: str | None = None) -> int:
    """`hark run`: build, tell systemd we are ready, run until the input ends or SIGTERM."""
    loop = asyncio.get_running_loop()
    tasks.install(loop)
    service.status("loading models and opening audio")
    bus = EventBus()
    bus.subscribe(ev.StateChanged, _status_line)
    daemon = await build(settings, secrets, bus, trace_path, ready_early=True)
    watchdog = service.Watchdog()
    daemon.assistant.parts.on_frame.append(watchdog.pet)
    main = asyncio.current_task()

    def on_term() -> None:
        service.stopping("stopping")
        if main is not None:
            main.cancel()

    signal_tasks = service.install_signal_handlers(loop, on_term)
    watchdog.start()
    idle_pets = tasks.spawn(_pet_while_capture_is_off(daemon.assistant, watchdog), "hark-watchdog-off")
    service.ready("listening for the wake word")
    metrics = None
    if settings.metrics.port:  # after READY=1: prometheus_client is not needed to hear the wake word
        from daemon.observe.metrics import Metrics

        metrics = Metrics(bus)
        metrics.start(settings.metrics.port, settings.metrics.host)
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
        if daemon.loading is not None and not daemon.loading.done():
            # a model load in a worker thread cannot be interrupted; `hark run` exits without waiting for it
            # (daemon.cli.main ends the process once everything is closed)
            log.info("stopped while models were still loading; exiting without waiting for them")
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
