"""Joins the MQTT bridge to a running daemon: trace events out, commands in, tools as MQTT actions.

The bridge only knows topics and payloads; the assistant only knows its Controller methods; this module is
the one place that maps one onto the other, so neither has to know the other exists.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from daemon.config.settings import Secrets, ToolSettings
from daemon.mqtt.bridge import MqttBridge

if TYPE_CHECKING:
    from daemon.app import Daemon

log = logging.getLogger(__name__)


def forward(bridge: MqttBridge, record: dict[str, Any]) -> None:
    """One trace record → the topics it concerns (most records concern none)."""
    ev = record["event"]
    if ev == "state":
        bridge.publish_state(record["to"])
    elif ev == "wake_detected":
        bridge.publish_event("wake_detected", {"model": record["model"], "score": record["score"]})
    elif ev == "transcript":
        bridge.publish_event("transcript", {"role": record["role"], "text": record["text"]})
        bridge.publish_last_transcript(record["text"])
    elif ev == "response_done":
        cost = float(record.get("cost_usd") or 0.0)
        bridge.publish_event(
            "response_done", {"status": record.get("status"), "usage": record.get("usage"), "cost": cost}
        )
        bridge.publish_last_cost(cost)
    elif ev == "fallback":
        bridge.publish_event("fallback", {"reason": record["reason"]})
    elif ev in ("realtime_error", "error"):
        bridge.publish_event("error", {"code": record.get("code", "error"), "message": record.get("message", "")})
    elif ev == "mute":
        bridge.publish_mute(record["on"])
    elif ev == "volume":
        bridge.publish_volume(record["percent"])
    elif ev == "wake_enabled":
        bridge.publish_wake(record["on"])


def _tool_action(bridge: MqttBridge, tool: ToolSettings) -> Any:
    async def action(call_id: str, arguments: dict[str, Any]) -> str:
        return await bridge.call_tool(tool, call_id, json.dumps(arguments))

    return action


async def attach(daemon: Daemon, secrets: Secrets, wake_names: list[str]) -> MqttBridge:
    settings = daemon.settings
    assistant = daemon.assistant
    bridge = MqttBridge(settings, secrets.mqtt_password, assistant, asyncio.get_running_loop(), wake_names)
    choices = assistant.parts.choices.current
    bridge.publish_mute(choices.muted)
    bridge.publish_volume(choices.volume)
    bridge.publish_wake(choices.wake_enabled)
    bridge.publish_state(str(assistant.sm.state))

    def on_record(record: dict[str, Any]) -> None:
        forward(bridge, record)

    daemon.trace.subscribe(on_record)
    for tool in settings.tools:
        if tool.mqtt_topic:
            daemon.tools.register(tool.name, _tool_action(bridge, tool))
    bridge.start()
    # closed right after the assistant went quiet, before the slower audio teardown: `offline` goes out
    # promptly on SIGTERM, and no state is published after it
    daemon.closers.insert(daemon.closers.index(assistant.shutdown), bridge.stop)
    log.info("MQTT: %s:%d as %s under %s", settings.mqtt.host, settings.mqtt.port, bridge.client_id, bridge.base)
    return bridge
