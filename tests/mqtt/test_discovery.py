"""The Home Assistant device discovery payload, checked against HA's documented MQTT schema per platform.

The rules below are written from Home Assistant's MQTT docs (device-based discovery, the abbreviation table,
and each platform's configuration variables): a payload that breaks one of them is rejected or loses
entities in a current Home Assistant, which a user sees as "the speaker never shows up".
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from daemon.mqtt import discovery

# Abbreviations as documented ("Supported abbreviations in MQTT discovery messages").
COMMON = {"p", "name", "uniq_id", "def_ent_id", "avty_t", "avty", "avty_mode", "ic", "en", "ent_cat",
          "json_attr_t", "json_attr_tpl", "qos", "e", "ent_pic", "dev_cla"}  # fmt: skip
PLATFORMS: dict[str, tuple[set[str], set[str]]] = {
    # platform: (required, allowed besides COMMON)
    "sensor": (
        {"stat_t"},
        {
            "stat_t",
            "val_tpl",
            "unit_of_meas",
            "stat_cla",
            "ops",
            "sug_dsp_prc",
            "exp_aft",
            "frc_upd",
            "lrst_val_tpl",
        },
    ),  # fmt: skip
    "switch": (
        {"cmd_t"},
        {"cmd_t", "stat_t", "pl_on", "pl_off", "stat_on", "stat_off", "val_tpl", "opt", "ret", "cmd_tpl"},
    ),  # fmt: skip
    "button": ({"cmd_t"}, {"cmd_t", "cmd_tpl", "pl_prs", "ret"}),
    "number": (
        {"cmd_t"},
        {
            "cmd_t",
            "stat_t",
            "min",
            "max",
            "step",
            "mode",
            "unit_of_meas",
            "val_tpl",
            "cmd_tpl",
            "opt",
            "ret",
            "pl_rst",
        },
    ),  # fmt: skip
    "event": ({"stat_t", "evt_typ"}, {"stat_t", "evt_typ", "val_tpl"}),
    "notify": ({"cmd_t"}, {"cmd_t", "cmd_tpl", "ret"}),
    "text": ({"cmd_t"}, {"cmd_t", "stat_t", "min", "max", "mode", "ptrn", "val_tpl", "cmd_tpl", "ret"}),
}
DEVICE_KEYS = {"ids", "name", "mf", "mdl", "mdl_id", "sw", "hw", "sn", "sa", "cu", "cns"}
ORIGIN_KEYS = {"name", "sw", "url"}
ROOT_KEYS = {"dev", "o", "cmps", "avty_t", "avty", "avty_mode", "qos", "stat_t", "cmd_t", "e"}
ID_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
ENTITY_ID_RE = re.compile(r"^[a-z_]+\.[a-z0-9_]+$")
BASE = "hark/kitchen"


def build(**kw: Any) -> discovery.DiscoveryMessage:
    args: dict[str, Any] = {"device_id": "kitchen", "base_topic": BASE, "prefix": "homeassistant",
                            "version": "1.2.3", "wake_models": ["hey_jarvis", "alexa"]}  # fmt: skip
    args.update(kw)
    return discovery.build(**args)


def check_component(key: str, comp: dict[str, Any]) -> None:
    platform = comp.get("p")
    assert platform in PLATFORMS, f"{key}: unsupported platform {platform!r}"
    required, allowed = PLATFORMS[platform]
    assert required <= comp.keys(), f"{key}: missing {required - comp.keys()}"
    extra = comp.keys() - COMMON - allowed
    assert not extra, f"{key}: keys not allowed for {platform}: {extra}"
    assert "obj_id" not in comp and "object_id" not in comp, f"{key}: object_id is gone since HA 2026.4"
    assert ENTITY_ID_RE.match(comp["def_ent_id"]) and comp["def_ent_id"].startswith(f"{platform}.")
    assert comp["avty_t"] == f"{BASE}/availability"
    for k, v in comp.items():
        if k.endswith("_t"):
            assert isinstance(v, str) and v and not set(v) & {"#", "+"}, f"{key}.{k} = {v!r}"
    if platform == "sensor" and comp.get("dev_cla") == "enum":
        assert comp["ops"] and all(isinstance(o, str) for o in comp["ops"])
        assert "unit_of_meas" not in comp and "stat_cla" not in comp, f"{key}: enum sensor with unit/class"
    if platform == "sensor" and comp.get("dev_cla") == "monetary":
        assert comp.get("stat_cla") in (None, "total"), f"{key}: monetary allows only state_class total"
    if platform == "number":
        assert comp["min"] <= comp["max"] and comp.get("step", 1) > 0
        assert comp.get("mode", "auto") in ("auto", "box", "slider")
    if platform == "event":
        assert comp["evt_typ"] and all(isinstance(t, str) and t for t in comp["evt_typ"])
    if platform == "text":
        assert 0 <= comp.get("min", 0) <= comp.get("max", 255) <= 255


def test_device_payload_matches_home_assistant_schema() -> None:
    msg = build()
    assert msg.topic == "homeassistant/device/hark_kitchen/config"
    assert ID_RE.match(msg.topic.split("/")[2])
    payload = json.loads(msg.encode())
    assert payload.keys() <= ROOT_KEYS
    assert payload["dev"].keys() <= DEVICE_KEYS and payload["dev"]["ids"] and payload["dev"]["name"]
    assert payload["o"].keys() <= ORIGIN_KEYS
    assert payload["o"]["name"] == "hark" and payload["o"]["sw"] == "1.2.3" and payload["o"]["url"]
    comps = payload["cmps"]
    for key, comp in comps.items():
        check_component(key, comp)
    uids = [c["uniq_id"] for c in comps.values()]
    assert len(set(uids)) == len(uids), "unique_id must be unique across components"
    assert len({c["def_ent_id"] for c in comps.values()}) == len(comps)


def test_every_entity_the_issue_asks_for_is_there() -> None:
    comps = build().payload["cmps"]
    by_platform: dict[str, list[str]] = {}
    for key, comp in comps.items():
        by_platform.setdefault(comp["p"], []).append(key)
    assert sorted(by_platform["switch"]) == ["mute", "wake"]
    assert sorted(by_platform["button"]) == ["listen", "stop"]
    assert by_platform["number"] == ["volume"] and by_platform["event"] == ["wake_detected"]
    assert by_platform["notify"] == ["say"] and by_platform["text"] == ["ask"]
    assert sorted(by_platform["sensor"]) == ["last_cost", "last_transcript", "state"]
    assert comps["state"]["ops"] == ["idle", "arbitrating", "listening", "processing", "responding", "muted", "error"]
    assert comps["mute"]["stat_t"] == f"{BASE}/mute" and comps["mute"]["cmd_t"] == f"{BASE}/cmd/mute"
    assert comps["volume"]["stat_t"] == f"{BASE}/volume"
    assert (comps["volume"]["min"], comps["volume"]["max"]) == (0, 100)
    assert comps["wake_detected"]["evt_typ"] == ["hey_jarvis", "alexa"]
    assert comps["last_cost"]["unit_of_meas"] == "USD"


def test_transcript_sensor_left_out_when_transcripts_are_private() -> None:
    comps = build(transcripts=False).payload["cmps"]
    assert "last_transcript" not in comps
    for key, comp in comps.items():
        check_component(key, comp)


def test_prefix_and_ids_follow_the_settings() -> None:
    msg = build(device_id="living-room_2", prefix="ha", base_topic="house/speaker")
    assert msg.topic == "ha/device/hark_living-room_2/config"
    comps = msg.payload["cmps"]
    assert comps["say"]["cmd_t"] == "house/speaker/cmd/say"
    assert comps["state"]["uniq_id"] == "hark_living-room_2_state"
    assert comps["state"]["def_ent_id"] == "sensor.hark_living_room_2_state"


def test_entity_ids_are_valid_even_with_a_hyphenated_device_id() -> None:
    comps = build(device_id="living-room").payload["cmps"]
    for comp in comps.values():
        assert ENTITY_ID_RE.match(comp["def_ent_id"]), comp["def_ent_id"]


@pytest.mark.parametrize(
    ("kw", "words"),
    [({"device_id": ""}, "device_id is empty"), ({"wake_models": []}, "wake_models is empty")],
)
def test_bad_inputs_are_named(kw: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        build(**kw)
