"""Joins the MQTT bridge to a running daemon: events out, commands in, tools as MQTT actions.

The bridge only knows topics and payloads; the assistant only knows its Controller methods; this module is
the one place that maps one onto the other, so neither has to know the other exists.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from daemon.answer.tools import ToolRegistry
from daemon.audio.frames import INPUT_RATE_HZ
from daemon.config.settings import Secrets, Settings, ToolSettings
from daemon.core.arbitration import Arbiter
from daemon.core.choices import RuntimeChoices
from daemon.core.states import State
from daemon.mqtt.bridge import Controller, MqttBridge
from daemon.observe import events as ev
from daemon.observe.bus import EventBus

log = logging.getLogger(__name__)


def subscribe(bus: EventBus, bridge: MqttBridge) -> None:
    """The events that concern MQTT → the topics they update (every other event concerns none)."""
    bus.subscribe(ev.StateChanged, lambda e: bridge.publish_state(e.after))
    bus.subscribe(
        ev.WakeDetected, lambda e: bridge.publish_event("wake_detected", {"model": e.model, "score": e.score})
    )
    bus.subscribe(ev.Transcript, lambda e: _transcript(bridge, e))
    bus.subscribe(ev.ResponseDone, lambda e: _response_done(bridge, e))
    bus.subscribe(ev.SpeechEnded, lambda e: _speech_ended(bridge, e))
    bus.subscribe(ev.CascadeUsage, lambda e: bridge.publish_event("cascade_usage", _usage(e)))
    bus.subscribe(ev.Fallback, lambda e: bridge.publish_event("fallback", {"reason": e.reason}))
    bus.subscribe(ev.RealtimeError, lambda e: bridge.publish_event("error", {"code": e.code, "message": e.message}))
    bus.subscribe(ev.Error, lambda e: bridge.publish_event("error", {"code": e.code, "message": e.message}))
    bus.subscribe(ev.MuteChanged, lambda e: bridge.publish_mute(e.on))
    bus.subscribe(ev.VolumeChanged, lambda e: bridge.publish_volume(e.percent))
    bus.subscribe(ev.WakeEnabledChanged, lambda e: bridge.publish_wake(e.on))
    bus.subscribe(ev.CommandRecognized, lambda e: _command(bridge, e))


def _wake(bridge: MqttBridge) -> Callable[[ev.WakeDetected], None]:
    return lambda e: bridge.publish_event("wake_detected", {"model": e.model, "score": e.score})


def _speech_ended(bridge: MqttBridge, event: ev.SpeechEnded) -> None:
    """Why the request ended (the turn model, silence, or its length) and how long the decision waited."""
    samples = None if event.decided_sample is None else event.decided_sample - event.sample
    waited_ms = None if samples is None else round(samples * 1000 / INPUT_RATE_HZ)
    bridge.publish_event("speech_ended", {"reason": event.reason, "waited_ms": waited_ms})


def _transcript(bridge: MqttBridge, event: ev.Transcript) -> None:
    bridge.publish_event("transcript", {"role": event.role, "text": event.text})
    bridge.publish_last_transcript(event.text)


def _command(bridge: MqttBridge, event: ev.CommandRecognized) -> None:
    data = {"intent": event.intent, "slots": event.slots, "confidence": event.confidence, "ms": event.ms}
    bridge.publish_event("command_recognized", data)
    bridge.publish_last_command(data)


def _response_done(bridge: MqttBridge, event: ev.ResponseDone) -> None:
    bridge.publish_event("response_done", {"status": event.status, "usage": event.usage, "cost": event.cost_usd})
    bridge.publish_last_cost(event.cost_usd)


def _usage(event: ev.CascadeUsage) -> dict[str, Any]:
    return {k: v for k, v in event.data().items() if v is not None}


def _tool_action(bridge: MqttBridge, tool: ToolSettings) -> Callable[[str, dict[str, Any]], Awaitable[str]]:
    async def action(call_id: str, arguments: dict[str, Any]) -> str:
        return await bridge.call_tool(tool, call_id, json.dumps(arguments))

    return action


def attach(  # noqa: PLR0917 - the wiring's one call site names each part
    settings: Settings,
    secrets: Secrets,
    bus: EventBus,
    controller: Controller,
    choices: RuntimeChoices,
    state: State,
    tools: ToolRegistry,
    wake_names: list[str],
) -> MqttBridge:
    """Build the bridge, publish the current snapshot, route events and tools, start connecting.
    The caller owns `await bridge.stop()`."""
    bridge = MqttBridge(settings, secrets.mqtt_password, controller, asyncio.get_running_loop(), wake_names)
    bridge.publish_mute(choices.muted)
    bridge.publish_volume(choices.volume)
    bridge.publish_wake(choices.wake_enabled)
    bridge.publish_state(str(state))
    subscribe(bus, bridge)
    for tool in settings.tools:
        if tool.mqtt_topic:
            tools.register(tool.name, _tool_action(bridge, tool))
    bridge.start()
    log.info("MQTT: %s:%d as %s under %s", settings.mqtt.host, settings.mqtt.port, bridge.client_id, bridge.base)
    return bridge


def arbiter_for(settings: Settings, bridge: MqttBridge) -> Arbiter | None:
    """mqtt.arbitration_ms > 0: claims go out through the bridge and come back to the arbiter."""
    if not settings.mqtt.arbitration_ms:
        return None
    arbiter = Arbiter(settings.device_id, settings.mqtt.arbitration_ms, bridge.publish_claim)
    bridge.on_claim = arbiter.on_message
    log.info("MQTT: wake arbitration on %s, %d ms window", bridge.arbitration_topic, settings.mqtt.arbitration_ms)
    return arbiter
