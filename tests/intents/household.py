"""A household's commands and test sentences, shared by the tests and scripts/bench_commands.py.

Five intents over five rooms, the way a tinkerer would declare them in config.toml, plus in-domain requests
with the intent and slots they must give and out-of-domain requests that must never be acted on.
"""

from __future__ import annotations

from typing import Any

ROOMS = ["kitchen", "living room", "bedroom", "bathroom", "office"]

CONFIG: dict[str, Any] = {
    "tools": [
        {
            "name": "set_light",
            "description": "Switch the lights of a room on or off.",
            "parameters": {
                "type": "object",
                "properties": {"room": {"type": "string"}, "on": {"type": "boolean"}},
                "required": ["room", "on"],
            },
            "mqtt_topic": "home/lights/set",
        },
        {
            "name": "set_brightness",
            "description": "Set the brightness of a room's lights, in percent.",
            "parameters": {
                "type": "object",
                "properties": {"room": {"type": "string"}, "percent": {"type": "integer"}},
                "required": ["room", "percent"],
            },
            "mqtt_topic": "home/lights/brightness",
        },
        {
            "name": "set_timer",
            "description": "Start a kitchen timer.",
            "parameters": {
                "type": "object",
                "properties": {"minutes": {"type": "integer"}},
                "required": ["minutes"],
            },
            "mqtt_topic": "home/timer/start",
        },
        {
            "name": "set_heating",
            "description": "Set a room's thermostat, in degrees Celsius.",
            "parameters": {
                "type": "object",
                "properties": {"room": {"type": "string"}, "degrees": {"type": "integer"}},
                "required": ["room", "degrees"],
            },
            "mqtt_topic": "home/heating/set",
        },
        {
            "name": "set_blinds",
            "description": "Open or close a room's blinds.",
            "parameters": {
                "type": "object",
                "properties": {"room": {"type": "string"}, "position": {"type": "string"}},
                "required": ["room", "position"],
            },
            "mqtt_topic": "home/blinds/set",
        },
    ],
    "commands": {
        "local": "offline",
        "lists": {
            "room": ROOMS,
            "state": {"on": True, "off": False},
            "percent": {"ten": 10, "twenty": 20, "thirty": 30, "fifty": 50, "seventy": 70, "hundred": 100},
            "minutes": {
                "one": 1,
                "two": 2,
                "three": 3,
                "five": 5,
                "ten": 10,
                "fifteen": 15,
                "twenty": 20,
                "thirty": 30,
                "forty five": 45,
                "sixty": 60,
            },
            "degrees": {
                "sixteen": 16,
                "eighteen": 18,
                "nineteen": 19,
                "twenty": 20,
                "twenty one": 21,
                "twenty two": 22,
            },
            "position": {"open": "open", "close": "closed", "shut": "closed", "raise": "open", "lower": "closed"},
        },
        "intents": [
            {
                "name": "lights",
                "sentences": [
                    "(turn|switch) {state} [the] {room} (light|lights)",
                    "(turn|switch) [the] {room} (light|lights) {state}",
                ],
                "tool": "set_light",
                "arguments": {"room": "{room}", "on": "{state}"},
                "say": "{room} lights {state}.",
            },
            {
                "name": "brightness",
                "sentences": [
                    "(set|dim) [the] {room} (light|lights) to {percent} percent",
                    "{room} (light|lights) to {percent} percent",
                ],
                "tool": "set_brightness",
                "arguments": {"room": "{room}", "percent": "{percent}"},
                "say": "{room} lights at {percent} percent.",
            },
            {
                "name": "timer",
                "sentences": [
                    "set [a] timer for {minutes} (minute|minutes)",
                    "set a {minutes} minute timer",
                    "start a {minutes} minute timer",
                ],
                "tool": "set_timer",
                "arguments": {"minutes": "{minutes}"},
                "say": "Timer set for {minutes} minutes.",
            },
            {
                "name": "heating",
                "sentences": [
                    "set [the] {room} (heating|temperature|thermostat) to {degrees} [degrees]",
                    "heat [the] {room} to {degrees} [degrees]",
                ],
                "tool": "set_heating",
                "arguments": {"room": "{room}", "degrees": "{degrees}"},
                "say": "{room} set to {degrees} degrees.",
            },
            {
                "name": "blinds",
                "sentences": ["{position} [the] {room} (blinds|shades)"],
                "tool": "set_blinds",
                "arguments": {"room": "{room}", "position": "{position}"},
                "say": "{room} blinds, {position}.",
            },
        ],
    },
}

IN_DOMAIN: list[tuple[str, str, dict[str, Any]]] = [
    ("turn on the kitchen lights", "lights", {"room": "kitchen", "state": True}),
    ("turn off the kitchen light", "lights", {"room": "kitchen", "state": False}),
    ("switch on the living room lights", "lights", {"room": "living room", "state": True}),
    ("turn the living room lights off", "lights", {"room": "living room", "state": False}),
    ("turn on the bedroom light", "lights", {"room": "bedroom", "state": True}),
    ("switch off the bedroom lights", "lights", {"room": "bedroom", "state": False}),
    ("turn the bathroom light on", "lights", {"room": "bathroom", "state": True}),
    ("turn off the bathroom lights", "lights", {"room": "bathroom", "state": False}),
    ("switch the office lights on", "lights", {"room": "office", "state": True}),
    ("turn off the office light", "lights", {"room": "office", "state": False}),
    ("set the kitchen lights to fifty percent", "brightness", {"room": "kitchen", "percent": 50}),
    ("dim the living room lights to twenty percent", "brightness", {"room": "living room", "percent": 20}),
    ("set the bedroom lights to ten percent", "brightness", {"room": "bedroom", "percent": 10}),
    ("dim the bathroom light to thirty percent", "brightness", {"room": "bathroom", "percent": 30}),
    ("office lights to seventy percent", "brightness", {"room": "office", "percent": 70}),
    ("set the kitchen light to hundred percent", "brightness", {"room": "kitchen", "percent": 100}),
    ("set a timer for five minutes", "timer", {"minutes": 5}),
    ("set a timer for ten minutes", "timer", {"minutes": 10}),
    ("set a fifteen minute timer", "timer", {"minutes": 15}),
    ("start a three minute timer", "timer", {"minutes": 3}),
    ("set a timer for one minute", "timer", {"minutes": 1}),
    ("set a timer for forty five minutes", "timer", {"minutes": 45}),
    ("set a twenty minute timer", "timer", {"minutes": 20}),
    ("set timer for sixty minutes", "timer", {"minutes": 60}),
    ("set the kitchen heating to twenty degrees", "heating", {"room": "kitchen", "degrees": 20}),
    ("set the living room temperature to twenty one degrees", "heating", {"room": "living room", "degrees": 21}),
    ("set the bedroom thermostat to eighteen degrees", "heating", {"room": "bedroom", "degrees": 18}),
    ("heat the bathroom to twenty two degrees", "heating", {"room": "bathroom", "degrees": 22}),
    ("set the office heating to nineteen", "heating", {"room": "office", "degrees": 19}),
    ("heat the kitchen to sixteen degrees", "heating", {"room": "kitchen", "degrees": 16}),
    ("set the bedroom temperature to twenty degrees", "heating", {"room": "bedroom", "degrees": 20}),
    ("open the kitchen blinds", "blinds", {"room": "kitchen", "position": "open"}),
    ("close the living room blinds", "blinds", {"room": "living room", "position": "closed"}),
    ("open the bedroom shades", "blinds", {"room": "bedroom", "position": "open"}),
    ("shut the bathroom blinds", "blinds", {"room": "bathroom", "position": "closed"}),
    ("raise the office blinds", "blinds", {"room": "office", "position": "open"}),
    ("lower the bedroom blinds", "blinds", {"room": "bedroom", "position": "closed"}),
    ("close the office shades", "blinds", {"room": "office", "position": "closed"}),
    ("switch off the living room light", "lights", {"room": "living room", "state": False}),
    ("turn on the office lights", "lights", {"room": "office", "state": True}),
    ("dim the kitchen lights to ten percent", "brightness", {"room": "kitchen", "percent": 10}),
    ("close the kitchen blinds", "blinds", {"room": "kitchen", "position": "closed"}),
]

OUT_OF_DOMAIN: list[str] = [
    "what is the weather like today",
    "tell me a joke",
    "who wrote hamlet",
    "play some jazz music",
    "what time is it",
    "how far away is the moon",
    "remind me to buy milk tomorrow",
    "what is the capital of france",
    "turn on the television",
    "open the garage door",
    "turn on the kitchen radio",
    "set an alarm for seven",
    "call my mother",
    "how do you make pancakes",
]
