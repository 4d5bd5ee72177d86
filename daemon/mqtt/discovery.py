"""Home Assistant MQTT device discovery: one retained message describes the whole speaker.

Why device-based discovery (`<prefix>/device/<id>/config` with `dev`, `o`, `cmps`): one message creates or
updates every entity at once, and current Home Assistant rejects payloads without an `o` (origin) block or
without a `unique_id` on each component. Keys use HA's documented abbreviations to keep the message small.
This module is a pure function of its arguments so tests can check it against the schema without a broker.

Topics the entities read (all under the base topic, e.g. `hark/kitchen`):
  state (retained enum), mute / wake (retained ON/OFF), volume (retained 0–100), event (JSON, not retained),
  last_transcript (retained plain text), last_cost (retained USD as a decimal), availability (online/offline),
  last_command (retained JSON {intent, slots, confidence, ms}: the last command understood on the device).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from daemon.core.states import State

STATES = tuple(s.value for s in State)
"""The `state` topic's values: exactly the state machine's."""
"""Every value `<base>/state` can take; the enum sensor's options."""
ORIGIN_NAME = "hark"
SUPPORT_URL = "https://github.com/hark-speaker/hark"
"""Shown by Home Assistant as the origin's support link. Placeholder until the project has a public home."""
TEXT_STATE_MAX = 255
"""Home Assistant refuses entity states longer than 255 characters."""

# Renders a wake_detected event from <base>/event as HA's {"event_type": ...}; other events render empty,
# which HA's event entity ignores (debug log only).
WAKE_EVENT_TEMPLATE = (
    "{% if value_json.event == 'wake_detected' %}"
    '{"event_type": {{ value_json.model | tojson }}, "score": {{ value_json.score | default(0) | tojson }}}'
    "{% endif %}"
)


@dataclass(frozen=True, slots=True)
class DiscoveryMessage:
    """What to publish (retained) so Home Assistant creates the device and its entities."""

    topic: str
    payload: dict[str, Any]

    def encode(self) -> bytes:
        return json.dumps(self.payload, separators=(",", ":")).encode("utf-8")


def discovery_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/device/hark_{device_id}/config"


def build(
    device_id: str,
    base_topic: str,
    prefix: str,
    version: str,
    wake_models: Sequence[str],
    *,
    transcripts: bool = True,
    commands: bool = False,
    support_url: str = SUPPORT_URL,
) -> DiscoveryMessage:
    """The device discovery message. `transcripts=False` leaves out the last-transcript sensor (privacy);
    `commands=True` adds the last-local-command sensor (commands.local on)."""
    if not device_id:
        raise ValueError("device_id is empty; expected letters, digits, _ or - (mqtt.device_id)")
    if not wake_models:
        raise ValueError("wake_models is empty; expected the names of the loaded wake models")
    uid = f"hark_{device_id}"
    components = _components(base_topic, list(wake_models), transcripts)
    if commands:
        components["last_command"] = {
            "p": "sensor",
            "name": "Last local command",
            "stat_t": f"{base_topic}/last_command",
            "val_tpl": "{{ value_json.intent }}",
            "json_attr_t": f"{base_topic}/last_command",
            "ic": "mdi:home-lightning-bolt",
        }
    for key, comp in components.items():
        comp["uniq_id"] = f"{uid}_{key}"
        comp["def_ent_id"] = f"{comp['p']}.{_slug(uid)}_{key}"
        comp["avty_t"] = f"{base_topic}/availability"
    origin = {"name": ORIGIN_NAME, "sw": version, "url": support_url}
    payload = {
        "dev": {
            "ids": [uid],
            "name": f"Hark {device_id}",
            "mf": "Hark",
            "mdl": "Hark smart speaker",
            "sw": version,
        },
        "o": origin,
        "cmps": components,
    }
    return DiscoveryMessage(discovery_topic(prefix, device_id), payload)


def _components(base: str, wake_models: list[str], transcripts: bool) -> dict[str, dict[str, Any]]:
    cmd = f"{base}/cmd"
    comps: dict[str, dict[str, Any]] = {
        "state": {
            "p": "sensor",
            "name": "State",
            "dev_cla": "enum",
            "ops": list(STATES),
            "stat_t": f"{base}/state",
            "ic": "mdi:account-voice",
        },
        "mute": _switch("Mute", f"{base}/mute", f"{cmd}/mute", "mdi:microphone-off"),
        "wake": _switch("Wake word detection", f"{base}/wake", f"{cmd}/wake", "mdi:ear-hearing"),
        "listen": {"p": "button", "name": "Listen", "cmd_t": f"{cmd}/listen", "ic": "mdi:microphone"},
        "stop": {"p": "button", "name": "Stop", "cmd_t": f"{cmd}/stop", "ic": "mdi:stop"},
        "volume": {
            "p": "number",
            "name": "Volume",
            "stat_t": f"{base}/volume",
            "cmd_t": f"{cmd}/volume",
            "min": 0,
            "max": 100,
            "step": 1,
            "unit_of_meas": "%",
            "mode": "slider",
            "ic": "mdi:volume-high",
        },
        "wake_detected": {
            "p": "event",
            "name": "Wake word detected",
            "stat_t": f"{base}/event",
            "evt_typ": wake_models,
            "val_tpl": WAKE_EVENT_TEMPLATE,
        },
        "say": {"p": "notify", "name": "Say", "cmd_t": f"{cmd}/say", "ic": "mdi:bullhorn"},
        "ask": {
            "p": "text",
            "name": "Ask",
            "cmd_t": f"{cmd}/ask",
            "max": TEXT_STATE_MAX,
            "ic": "mdi:chat-question",
        },
        "last_cost": {
            "p": "sensor",
            "name": "Last response cost",
            "stat_t": f"{base}/last_cost",
            "dev_cla": "monetary",
            "unit_of_meas": "USD",
            "sug_dsp_prc": 4,
        },
    }
    if transcripts:
        comps["last_transcript"] = {
            "p": "sensor",
            "name": "Last transcript",
            "stat_t": f"{base}/last_transcript",
            "val_tpl": f"{{{{ value[:{TEXT_STATE_MAX}] }}}}",
            "ic": "mdi:text-recognition",
        }
    return comps


def _slug(text: str) -> str:
    """Entity ids allow only lowercase letters, digits and _ (a device_id may hold - and capitals)."""
    return re.sub(r"[^a-z0-9_]", "_", text.lower())


def _switch(name: str, state_topic: str, command_topic: str, icon: str) -> dict[str, Any]:
    return {
        "p": "switch",
        "name": name,
        "stat_t": state_topic,
        "cmd_t": command_topic,
        "pl_on": "ON",
        "pl_off": "OFF",
        "ic": icon,
    }
