"""The MQTT bridge end to end against a real Mosquitto: what Home Assistant or any MQTT client would see."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.mqtt.bridge import MqttBridge, check_broker
from daemon.mqtt.commands import COMMANDS as COMMAND_NAMES
from tests.fixtures_mqtt import Broker, MqttProbe, RecordingController, free_port, mqtt_settings

BASE = "hark/testbox"
ROOT = Path(__file__).resolve().parents[2]


def is_text(value: str) -> Any:
    return lambda m: m.text == value


async def bridge_marker(probe: MqttProbe, base: str = BASE) -> None:
    """Send a bad command and wait for the bridge's error event about it: a marker that the bridge has handled
    (and published the results of) every message sent to it before. Absence is then checked after it."""
    marker = f"{base}/cmd/marker-{time.monotonic_ns()}"
    probe.publish(marker, "x")
    await probe.wait_for(f"{base}/event", lambda m: marker in m.text)


async def connected_probe(mqtt_probe: Any, broker: Broker, *topics: str) -> MqttProbe:
    probe: MqttProbe = mqtt_probe(broker.port)
    for t in topics or (f"{BASE}/#",):
        probe.subscribe(t)
    return probe


async def test_connect_publishes_availability_state_and_discovery(
    mosquitto: Broker, mqtt_probe: Any, mqtt_bridge: Any
) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto, f"{BASE}/#", "homeassistant/device/#")
    mqtt_bridge(mqtt_settings(mosquitto.port))
    online = await probe.wait_for(f"{BASE}/availability", is_text("online"))
    assert online.retain or probe.on(f"{BASE}/availability")
    assert (await probe.wait_for(f"{BASE}/state")).text == "idle"
    assert (await probe.wait_for(f"{BASE}/mute")).text == "OFF"
    assert (await probe.wait_for(f"{BASE}/volume")).text == "70"
    assert (await probe.wait_for(f"{BASE}/wake")).text == "ON"
    disc = await probe.wait_for("homeassistant/device/hark_testbox/config")
    payload = json.loads(disc.payload)
    assert payload["o"]["name"] == "hark" and "state" in payload["cmps"]


async def test_state_changes_reach_their_retained_topics(mosquitto: Broker, mqtt_probe: Any, mqtt_bridge: Any) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto)
    bridge, _ = mqtt_bridge(mqtt_settings(mosquitto.port))
    await probe.wait_for(f"{BASE}/availability", is_text("online"))
    bridge.publish_state("listening")
    bridge.publish_mute(True)
    bridge.publish_volume(35)
    bridge.publish_wake(False)
    bridge.publish_last_cost(0.0123)
    bridge.publish_last_transcript("turn on the lights")  # publish_transcripts is off: stays private
    bridge.publish_event("transcript", {"role": "user", "text": "secret"})
    bridge.publish_event("wake_detected", {"model": "hey_jarvis", "score": 0.97})
    await probe.wait_for(f"{BASE}/state", is_text("listening"))
    await probe.wait_for(f"{BASE}/mute", is_text("ON"))
    await probe.wait_for(f"{BASE}/volume", is_text("35"))
    await probe.wait_for(f"{BASE}/wake", is_text("OFF"))
    await probe.wait_for(f"{BASE}/last_cost", is_text("0.012300"))
    event = await probe.wait_for(f"{BASE}/event")
    assert json.loads(event.payload) == {"event": "wake_detected", "model": "hey_jarvis", "score": 0.97}
    assert not event.retain
    assert probe.on(f"{BASE}/last_transcript") == []
    assert all(b"secret" not in m.payload for m in probe.messages)

    # a fresh subscriber (Home Assistant after its restart) gets the current values as retained messages
    late = await connected_probe(mqtt_probe, mosquitto)
    for topic, value in [
        ("state", "listening"),
        ("mute", "ON"),
        ("volume", "35"),
        ("availability", "online"),
    ]:
        msg = await late.wait_for(f"{BASE}/{topic}")
        assert (msg.text, msg.retain) == (value, True)


async def test_transcripts_published_only_when_enabled(mosquitto: Broker, mqtt_probe: Any, mqtt_bridge: Any) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto)
    bridge, _ = mqtt_bridge(mqtt_settings(mosquitto.port, publish_transcripts=True))
    await probe.wait_for(f"{BASE}/availability", is_text("online"))
    bridge.publish_last_transcript("turn on the lights")
    bridge.publish_event("transcript", {"role": "user", "text": "turn on the lights"})
    await probe.wait_for(f"{BASE}/last_transcript", is_text("turn on the lights"))
    event = await probe.wait_for(f"{BASE}/event")
    assert json.loads(event.payload)["event"] == "transcript"


async def test_publishing_bad_values_is_refused_clearly(mosquitto: Broker, mqtt_bridge: Any) -> None:
    bridge, _ = mqtt_bridge(mqtt_settings(mosquitto.port))
    for call, words in [
        (lambda: bridge.publish_state("dancing"), "unknown state 'dancing'; expected one of idle"),
        (lambda: bridge.publish_volume(101), "expected an int from 0 to 100"),
        (lambda: bridge.publish_last_cost(float("nan")), "expected a USD value"),
    ]:
        try:
            call()
        except ValueError as e:
            assert words in str(e)
        else:
            raise AssertionError(f"no error for {words}")


async def test_clean_stop_publishes_offline(mosquitto: Broker, mqtt_probe: Any) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto)
    bridge = MqttBridge(mqtt_settings(mosquitto.port), "", RecordingController(), asyncio.get_running_loop(), ["alexa"])
    bridge.start()
    await probe.wait_for(f"{BASE}/availability", is_text("online"))
    await asyncio.wait_for(bridge.stop(), 5)
    msg = await probe.wait_for(f"{BASE}/availability", is_text("offline"))
    assert msg.text == "offline"
    assert not bridge.connected


VICTIM = """
import asyncio, sys
from daemon.config import loader as config_file
from daemon.mqtt.bridge import MqttBridge
from tests.fixtures_mqtt import RecordingController

async def main() -> None:
    s = config_file.from_dict({"mqtt": {"host": "127.0.0.1", "port": int(sys.argv[1]), "device_id": "victim"}})
    MqttBridge(s, "", RecordingController(), asyncio.get_running_loop(), ["hey_jarvis"]).start()
    await asyncio.sleep(120)

asyncio.run(main())
"""


async def test_last_will_says_offline_when_the_daemon_is_killed(mosquitto: Broker, mqtt_probe: Any) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto, "hark/victim/availability")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", VICTIM, str(mosquitto.port), cwd=ROOT)
    try:
        await probe.wait_for("hark/victim/availability", is_text("online"), timeout_s=30)
        proc.kill()  # SIGKILL: no clean shutdown, only the broker's last will can tell
        await asyncio.wait_for(proc.wait(), 10)
        await probe.wait_for("hark/victim/availability", is_text("offline"))
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 10)
    late = await connected_probe(mqtt_probe, mosquitto, "hark/victim/availability")
    msg = await late.wait_for("hark/victim/availability")
    assert (msg.text, msg.retain) == ("offline", True)


async def test_broker_restart_republishes_retained_state(mosquitto: Broker, mqtt_probe: Any, mqtt_bridge: Any) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto)
    bridge, ctl = mqtt_bridge(mqtt_settings(mosquitto.port))
    await probe.wait_for(f"{BASE}/availability", is_text("online"))
    bridge.publish_state("responding")
    bridge.publish_mute(True)
    bridge.publish_volume(12)
    bridge.publish_wake(False)
    await probe.wait_for(f"{BASE}/wake", is_text("OFF"))
    probe.messages.clear()

    mosquitto.restart()  # no persistence: every retained message is gone with the old broker
    await probe.wait_for(f"{BASE}/availability", is_text("online"), timeout_s=20)
    late = await connected_probe(mqtt_probe, mosquitto)
    expected = {"state": "responding", "mute": "ON", "volume": "12", "wake": "OFF", "availability": "online"}
    for topic, value in expected.items():
        msg = await late.wait_for(f"{BASE}/{topic}")
        assert (msg.text, msg.retain) == (value, True), topic
    # and commands flow again after the reconnect
    late.publish(f"{BASE}/cmd/volume", "44")
    await ctl.wait_for(("set_volume", (44,)))


async def test_broker_down_at_start_does_not_block_and_connects_later(
    tmp_path: Path, mqtt_probe: Any, mqtt_bridge: Any
) -> None:
    port = free_port()
    t0 = time.monotonic()
    bridge, _ = mqtt_bridge(mqtt_settings(port))
    assert time.monotonic() - t0 < 1.0, "start() must not wait for the broker"
    bridge.publish_state("processing")  # offline: remembered, not queued
    bridge.publish_event("wake_detected", {"model": "alexa", "score": 0.9})  # offline: dropped
    await refuse_connections(port, attempts=2)  # the bridge really tried (and failed) before the broker came
    assert not bridge.connected
    conf = f"persistence false\nuser root\nlistener {port} 127.0.0.1\nallow_anonymous true\n"
    broker = Broker(tmp_path, conf, [port])
    broker.start()
    try:
        probe = await connected_probe(mqtt_probe, broker)
        msg = await probe.wait_for(f"{BASE}/state", is_text("processing"), timeout_s=20)
        assert msg.retain or msg.text == "processing"
        bridge.publish_event("marker", {})  # published after the dropped one: if that were queued, it came first
        await probe.wait_for(f"{BASE}/event", lambda m: json.loads(m.payload)["event"] == "marker")
        assert [json.loads(m.payload)["event"] for m in probe.on(f"{BASE}/event")] == ["marker"]
        assert bridge.dropped_events >= 1
    finally:
        await bridge.stop()
        broker.stop()


async def refuse_connections(port: int, attempts: int, timeout_s: float = 20.0) -> None:
    """Listen on `port` and close each connection at once (no MQTT broker there), until `attempts` came in."""
    came = 0
    enough = asyncio.Event()

    def on_connect(_r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal came
        came += 1
        writer.close()
        if came >= attempts:
            enough.set()

    server = await asyncio.start_server(on_connect, "127.0.0.1", port)
    try:
        await asyncio.wait_for(enough.wait(), timeout_s)
    finally:
        server.close()
        await server.wait_closed()


COMMANDS: list[tuple[str, str, tuple[str, tuple[Any, ...]]]] = [
    ("listen", "PRESS", ("listen", ())),
    ("stop", "PRESS", ("stop", ())),
    ("say", "Dinner is ready", ("say", ("Dinner is ready", False))),
    ("say", '{"text": "Fire alarm", "priority": true}', ("say", ("Fire alarm", True))),
    ("ask", "What's the weather?", ("ask", ("What's the weather?",))),
    ("mute", "ON", ("set_mute", (True,))),
    ("mute", "off", ("set_mute", (False,))),
    ("volume", "42.0", ("set_volume", (42,))),
    ("wake", "OFF", ("set_wake", (False,))),
]


async def test_every_command_topic_reaches_the_controller(mosquitto: Broker, mqtt_probe: Any, mqtt_bridge: Any) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto)
    _, ctl = mqtt_bridge(mqtt_settings(mosquitto.port))
    await probe.wait_for(f"{BASE}/availability", is_text("online"))
    for name, payload, _ in COMMANDS:
        probe.publish(f"{BASE}/cmd/{name}", payload)
    await ctl.wait_for(COMMANDS[-1][2])
    assert ctl.calls == [call for _, _, call in COMMANDS]


async def test_group_topics_reach_every_speaker(mosquitto: Broker, mqtt_probe: Any, mqtt_bridge: Any) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto, "hark/+/availability")
    _, kitchen = mqtt_bridge(mqtt_settings(mosquitto.port, device_id="kitchen"))
    _, hall = mqtt_bridge(mqtt_settings(mosquitto.port, device_id="hall"))
    await probe.wait_for("hark/kitchen/availability", is_text("online"))
    await probe.wait_for("hark/hall/availability", is_text("online"))
    probe.publish("hark/all/cmd/say", "Dinner is ready")
    await kitchen.wait_for(("say", ("Dinner is ready", False)))
    await hall.wait_for(("say", ("Dinner is ready", False)))
    probe.publish("hark/kitchen/cmd/volume", "10")
    await kitchen.wait_for(("set_volume", (10,)))
    probe.publish("hark/hall/cmd/volume", "11")  # sent later on the same connection: a marker for the hall
    await hall.wait_for(("set_volume", (11,)))
    assert ("set_volume", (10,)) not in hall.calls


async def test_bad_payloads_become_error_events_and_never_reach_the_controller(
    mosquitto: Broker, mqtt_probe: Any, mqtt_bridge: Any
) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto)
    _, ctl = mqtt_bridge(mqtt_settings(mosquitto.port, max_payload_bytes=64))
    await probe.wait_for(f"{BASE}/availability", is_text("online"))
    bad = [
        ("volume", b"250", "out of range"),
        ("volume", b"loud", "expected a number"),
        ("mute", b"perhaps", "expected ON or OFF"),
        ("say", b'{"text": ', "invalid JSON"),
        ("say", b"   ", "empty text"),
        ("say", b"\xff\xfe\xfd", "not UTF-8"),
        ("ask", b"x" * 65, "limit is 64"),
        ("explode", b"now", "unknown command"),
    ]
    for name, payload, _ in bad:
        probe.publish(f"{BASE}/cmd/{name}", payload)
    for name, _, words in bad:
        topic = f"{BASE}/cmd/{name}"
        msg = await probe.wait_for(f"{BASE}/event", lambda m, t=topic, w=words: t in m.text and w in m.text)
        event = json.loads(msg.payload)
        assert (event["event"], event["code"], event["topic"]) == ("error", "bad_command", topic)
        assert event["message"].startswith(f"{topic}: "), event
    probe.publish(f"{BASE}/cmd/volume", "55")  # the bridge still answers
    await ctl.wait_for(("set_volume", (55,)))
    assert ctl.calls == [("set_volume", (55,))]


async def test_retained_one_shot_commands_are_not_replayed(
    mosquitto: Broker, mqtt_probe: Any, mqtt_bridge: Any
) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto)
    probe.publish(f"{BASE}/cmd/say", "stale announcement", retain=True)
    probe.publish(f"{BASE}/cmd/mute", "ON", retain=True)  # a state command: applying it is harmless
    _, ctl = mqtt_bridge(mqtt_settings(mosquitto.port))
    await ctl.wait_for(("set_mute", (True,)))
    msg = await probe.wait_for(f"{BASE}/event", lambda m: b"retained" in m.payload)
    assert json.loads(msg.payload)["topic"] == f"{BASE}/cmd/say"
    assert not [c for c in ctl.calls if c[0] == "say"]


async def test_controller_failure_is_reported_and_bridge_goes_on(
    mosquitto: Broker, mqtt_probe: Any, mqtt_bridge: Any
) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto)
    bridge, ctl = mqtt_bridge(mqtt_settings(mosquitto.port))

    def broken(text: str) -> None:
        raise RuntimeError("realtime session not ready")

    ctl.ask = broken  # type: ignore[method-assign]
    await probe.wait_for(f"{BASE}/availability", is_text("online"))
    probe.publish(f"{BASE}/cmd/ask", "hello?")
    msg = await probe.wait_for(f"{BASE}/event", lambda m: b"command_failed" in m.payload)
    assert "realtime session not ready" in json.loads(msg.payload)["message"]
    probe.publish(f"{BASE}/cmd/stop", "PRESS")
    await ctl.wait_for(("stop", ()))
    assert bridge.connected


async def test_home_assistant_birth_republishes_discovery(mosquitto: Broker, mqtt_probe: Any, mqtt_bridge: Any) -> None:
    topic = "homeassistant/device/hark_testbox/config"
    probe = await connected_probe(mqtt_probe, mosquitto, f"{BASE}/availability", f"{BASE}/event", topic)
    mqtt_bridge(mqtt_settings(mosquitto.port))
    await probe.wait_for(topic)
    probe.publish("homeassistant/status", "offline")
    await bridge_marker(probe)
    assert len(probe.on(topic)) == 1, "HA going offline must not trigger discovery"
    probe.publish("homeassistant/status", "online")
    await probe.wait_for(topic, lambda m: len(probe.on(topic)) >= 2)
    assert json.loads(probe.on(topic)[-1].payload) == json.loads(probe.on(topic)[0].payload)


async def test_discovery_off_and_custom_prefix(mosquitto: Broker, mqtt_probe: Any, mqtt_bridge: Any) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto, f"{BASE}/availability", f"{BASE}/event", "+/device/#")
    mqtt_bridge(mqtt_settings(mosquitto.port, discovery=False))
    mqtt_bridge(mqtt_settings(mosquitto.port, device_id="other", discovery_prefix="ha"))
    await probe.wait_for("ha/device/hark_other/config")
    await probe.wait_for(f"{BASE}/availability", is_text("online"))
    probe.publish("homeassistant/status", "online")
    await bridge_marker(probe)
    assert not [m for m in probe.messages if "hark_testbox" in m.topic]


async def test_check_broker_reports_reachable_and_unreachable(mosquitto: Broker) -> None:
    ok, message = await check_broker(mqtt_settings(mosquitto.port), "")
    assert ok, message
    ok, message = await check_broker(mqtt_settings(free_port()), "", timeout_s=3)
    assert not ok and "unreachable" in message and "mqtt.host" in message
    ok, message = await check_broker(mqtt_settings(mosquitto.port, host=""), "")
    assert ok and "off" in message


# --- tools as home-automation actions ---------------------------------------------------------------------

LIGHTS = {"name": "lights", "mqtt_topic": "home/lights/set", "response_topic": "home/lights/result"}


def answer_with(probe: MqttProbe, request_topic: str, reply: Any) -> list[dict[str, Any]]:
    """Make the probe act as Node-RED: answer each request on the response topic; returns the requests."""
    requests: list[dict[str, Any]] = []

    def on_request(client: Any, _u: Any, msg: Any) -> None:
        req = json.loads(msg.payload)
        requests.append(req)
        for topic, payload in reply(req, requests):
            client.publish(topic, payload, qos=1)

    probe.client.message_callback_add(request_topic, on_request)
    probe.subscribe(request_topic)
    return requests


async def test_tool_call_round_trip_through_mqtt(mosquitto: Broker, mqtt_probe: Any, mqtt_bridge: Any) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto)
    requests = answer_with(
        probe,
        "home/lights/set",
        lambda req, _all: [("home/lights/result", json.dumps({"call_id": req["call_id"], "state": "on"}))],
    )
    settings = mqtt_settings(mosquitto.port, tools=[{**LIGHTS, "timeout_s": 5}])
    bridge, _ = mqtt_bridge(settings)
    await probe.wait_for(f"{BASE}/availability", is_text("online"))
    out = await bridge.call_tool(settings.tools[0], "call_1", '{"room": "kitchen", "on": true}')
    assert json.loads(out) == {"call_id": "call_1", "state": "on"}
    assert requests == [{"call_id": "call_1", "name": "lights", "arguments": {"room": "kitchen", "on": True}}]


async def test_concurrent_tool_calls_get_their_own_replies(
    mosquitto: Broker, mqtt_probe: Any, mqtt_bridge: Any
) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto)

    def reply_when_both_arrived(_req: Any, seen: list[dict[str, Any]]) -> list[tuple[str, str]]:
        if len(seen) < 2:
            return []
        return [("home/lights/result", json.dumps({"call_id": r["call_id"], "for": r["arguments"]}))
                for r in reversed(seen)]  # fmt: skip

    answer_with(probe, "home/lights/set", reply_when_both_arrived)
    settings = mqtt_settings(mosquitto.port, tools=[LIGHTS])
    bridge, _ = mqtt_bridge(settings)
    await probe.wait_for(f"{BASE}/availability", is_text("online"))
    tool = settings.tools[0]
    a, b = await asyncio.gather(bridge.call_tool(tool, "a", '"kitchen"'), bridge.call_tool(tool, "b", '"hall"'))
    assert json.loads(a) == {"call_id": "a", "for": "kitchen"}
    assert json.loads(b) == {"call_id": "b", "for": "hall"}


async def test_tool_reply_without_call_id_answers_the_waiting_call(
    mosquitto: Broker, mqtt_probe: Any, mqtt_bridge: Any
) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto)
    requests = answer_with(probe, "home/door/lock", lambda _r, _a: [("home/door/state", "locked")])
    tool_cfg = {"name": "door", "mqtt_topic": "home/door/lock", "response_topic": "home/door/state"}
    settings = mqtt_settings(mosquitto.port)  # the tool is not in the settings: subscribed on first use
    bridge, _ = mqtt_bridge(settings)
    await probe.wait_for(f"{BASE}/availability", is_text("online"))
    tool = mqtt_settings(mosquitto.port, tools=[tool_cfg]).tools[0]
    assert await bridge.call_tool(tool, "c1", "not json {") == "locked"
    assert requests[0]["arguments"] == "not json {"


async def test_tool_without_response_topic_and_timeouts(mosquitto: Broker, mqtt_probe: Any, mqtt_bridge: Any) -> None:
    probe = await connected_probe(mqtt_probe, mosquitto, f"{BASE}/#", "home/#")
    fire_and_forget = {"name": "scene", "mqtt_topic": "home/scene/set"}
    silent = {"name": "blinds", "mqtt_topic": "home/blinds/set", "response_topic": "home/blinds/done",
              "timeout_s": 0.5}  # fmt: skip
    no_topic = {"name": "nowhere"}
    settings = mqtt_settings(mosquitto.port, tools=[fire_and_forget, silent, no_topic])
    bridge, _ = mqtt_bridge(settings)
    await probe.wait_for(f"{BASE}/availability", is_text("online"))
    scene, blinds, nowhere = settings.tools
    assert json.loads(await bridge.call_tool(scene, "s1", '{"name": "movie"}')) == {"ok": True}
    req = await probe.wait_for("home/scene/set")
    assert json.loads(req.payload)["arguments"] == {"name": "movie"}
    out = json.loads(await bridge.call_tool(blinds, "b1", "{}"))
    assert out == {"ok": False, "error": "no reply from home/blinds/done within 0.5 s"}
    out = json.loads(await bridge.call_tool(nowhere, "n1", "{}"))
    assert out["ok"] is False and "no mqtt_topic" in out["error"]


async def test_tool_call_with_broker_down_fails_fast(mqtt_bridge: Any) -> None:
    settings = mqtt_settings(free_port(), tools=[LIGHTS])
    bridge, _ = mqtt_bridge(settings)
    out = json.loads(await asyncio.wait_for(bridge.call_tool(settings.tools[0], "x", "{}"), 2))
    assert out["ok"] is False and "not connected" in out["error"]


# --- fuzz: random payloads on every command topic, through the broker -------------------------------------

FUZZ_TOPICS = (
    [f"{BASE}/cmd/{c}" for c in COMMAND_NAMES]
    + [f"hark/all/cmd/{c}" for c in COMMAND_NAMES]
    + [
        f"{BASE}/cmd/unknown",
        f"{BASE}/cmd/say/extra",
    ]
)
fuzz_payloads = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=120).map(str.encode),
    st.sampled_from([b"ON", b"off", b"42", b"-3", b"1e9", b"nan", b'{"text": "hi", "priority": true}', b"{"]),
    st.dictionaries(
        st.sampled_from(["text", "priority", "volume", "x"]),
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        max_size=3,
    ).map(lambda d: json.dumps(d).encode()),  # fmt: skip
)


def assert_only_valid_calls(calls: list[tuple[str, tuple[Any, ...]]]) -> None:
    for name, args in calls:
        if name in ("say", "ask"):
            assert isinstance(args[0], str) and args[0].strip() == args[0] and args[0]
        if name == "say":
            assert isinstance(args[1], bool)
        if name == "set_volume":
            assert isinstance(args[0], int) and 0 <= args[0] <= 100
        if name in ("set_mute", "set_wake"):
            assert isinstance(args[0], bool)


@pytest.mark.slow
def test_fuzz_every_command_topic_then_bridge_still_answers(mosquitto: Broker, mqtt_probe: Any) -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzz-loop", daemon=True)
    thread.start()
    ctl = RecordingController()

    async def make() -> MqttBridge:
        settings = mqtt_settings(mosquitto.port, max_payload_bytes=256)
        bridge = MqttBridge(settings, "", ctl, asyncio.get_running_loop(), ["hey_jarvis"])
        bridge.start()
        return bridge

    bridge = asyncio.run_coroutine_threadsafe(make(), loop).result(10)
    sender: MqttProbe = mqtt_probe(mosquitto.port)
    sender.subscribe(f"{BASE}/availability")
    deadline = time.monotonic() + 10
    while not sender.on(f"{BASE}/availability") and time.monotonic() < deadline:
        time.sleep(0.02)
    sent = [0]

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(batch=st.lists(st.tuples(st.sampled_from(FUZZ_TOPICS), fuzz_payloads), min_size=20, max_size=60))
    def blast(batch: list[tuple[str, bytes]]) -> None:
        for topic, payload in batch:
            sender.client.publish(topic, payload, qos=1)
        sent[0] += len(batch)

    try:
        blast()
        # Sent last, so answered only after all the garbage. Mosquitto drops QoS 1 messages past a client's
        # queue limit (1000) while the bridge works through the backlog, so ask again until it answers.
        deadline = time.monotonic() + 60
        while ("set_volume", (37,)) not in ctl.calls and time.monotonic() < deadline:
            sender.publish(f"{BASE}/cmd/volume", "37")
            until = time.monotonic() + 5
            while ("set_volume", (37,)) not in ctl.calls and time.monotonic() < until:
                time.sleep(0.05)
        assert ("set_volume", (37,)) in ctl.calls, f"bridge stopped answering after {sent[0]} payloads"
        assert sent[0] >= 1000
        assert_only_valid_calls(ctl.calls)
        assert bridge.connected
    finally:
        asyncio.run_coroutine_threadsafe(bridge.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
