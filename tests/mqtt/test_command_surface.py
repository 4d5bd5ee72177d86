"""Issue 10's acceptance: random sequences of commands and payloads, good and hostile, against one running
daemon (real Mosquitto, the PulseAudio rig, the test Realtime server, the real Piper voice).

Afterwards the speaker is idle — or muted exactly when the last accepted mute command said so — within a
bounded time; every rejected payload produced an `error` event naming its topic with a non-empty message;
no background task died; nothing was logged with a traceback.

The daemon runs on its own event loop in a thread, so hypothesis drives it synchronously like any MQTT
client would; the examples share that one daemon, as a household shares one speaker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.app import Daemon
from daemon.core.assistant import cancel_task
from daemon.system import tasks
from tests.fixtures_audio import PulseRig
from tests.fixtures_mqtt import Broker, MqttProbe
from tests.fixtures_realtime import API_KEY
from tests.harness import Run, settings_for, start
from tests.realtime_server import SERVER_LOG, Reply, ThreadedRealtimeServer, tone

BASE = "hark/surface"
QUIET_WITHIN_S = 60.0


@dataclass(frozen=True)
class Cmd:
    topic: str  # suffix under <base>/cmd/ (or hark/all/cmd/)
    payload: bytes
    valid: bool
    group: bool = False


def ok(topic: str, payload: str | bytes) -> Cmd:
    return Cmd(topic, payload.encode() if isinstance(payload, str) else payload, True)


def bad(topic: str, payload: str | bytes) -> Cmd:
    return Cmd(topic, payload.encode() if isinstance(payload, str) else payload, False)


short_text = st.sampled_from(["Ding.", "Tea is ready.", "The post is here.", "Hello there."])
good = st.one_of(
    short_text.map(lambda t: ok("say", t)),
    short_text.map(lambda t: ok("say", json.dumps({"text": t, "priority": True}))),
    st.just(ok("stop", "")),
    st.just(ok("listen", "")),
    st.sampled_from(["ON", "OFF", "on", "off", "true", "false"]).map(lambda v: ok("mute", v)),
    st.integers(0, 100).map(lambda v: ok("volume", str(v))),
    st.sampled_from(["ON", "OFF"]).map(lambda v: ok("wake", v)),
    st.just(ok("ask", "What time is it?")),
)
hostile = st.one_of(
    st.sampled_from(["9" * 4000, "1_0", "٤٢", "４２", "loud", "", "-5", "101", "nan", "inf", "1e400", "4\x002"]).map(
        lambda v: bad("volume", v)
    ),
    st.sampled_from([b"\xff\xfe", b"maybe", b"", b"ON\x00"]).map(lambda v: bad("mute", v)),
    st.sampled_from([b"\xff\xfe", b"sometimes"]).map(lambda v: bad("wake", v)),
    st.sampled_from(["", "   ", '{"txt": "x"}', '{"text": 5}', "{broken json", "Dinner\x00 is ready"]).map(
        lambda v: bad("say", v)
    ),
    st.sampled_from([b"\xc3\x28", b"a" * 1_000_000]).map(lambda v: bad("ask", v)),
    st.just(bad("explode", "now")),
)
sequences = st.lists(st.one_of(good, good, hostile), min_size=1, max_size=15)


class Speaker:
    """A daemon running on its own loop in a thread; its trace records, and a probe on the broker.
    (A plain class: hypothesis would print a dataclass field by field in every failure report.)"""

    def __init__(self, daemon: Daemon, run: Run, loop: asyncio.AbstractEventLoop, probe: MqttProbe) -> None:
        self.daemon, self.run, self.loop, self.probe = daemon, run, loop, probe

    def state(self) -> str:
        return self.daemon.assistant.sm.state.value

    def send(self, cmd: Cmd) -> None:
        prefix = "hark/all" if cmd.group else BASE
        self.probe.publish(f"{prefix}/cmd/{cmd.topic}", cmd.payload)

    def errors(self) -> list[dict[str, Any]]:
        return [json.loads(m.text) for m in self.probe.on(f"{BASE}/event") if json.loads(m.text)["event"] == "error"]

    def settle(self, marker: int) -> None:
        """Wait until the daemon handled everything sent so far (the volume `marker` sent last came back:
        commands are handled in order) and is quiet."""
        seen = len(self.probe.on(f"{BASE}/volume"))
        self.probe.publish(f"{BASE}/cmd/volume", str(marker))
        deadline = time.monotonic() + QUIET_WITHIN_S
        while time.monotonic() < deadline:
            # the marker came back over MQTT: the bridge publishes in order, so every error event before it
            # has reached the probe too
            later = self.probe.on(f"{BASE}/volume")[seen:]
            handled = any(m.text == str(marker) for m in later)
            quiet = not self.daemon.assistant.busy and self.state() in ("idle", "muted")
            if handled and quiet:
                return
            time.sleep(0.05)
        raise AssertionError(f"not quiet within {QUIET_WITHIN_S} s: state {self.state()}")

    def __repr__(self) -> str:
        return f"Speaker(state={self.state()})"


@pytest.fixture
def speaker(
    tmp_path: Path,
    pulse_rig: PulseRig,
    models_dir: Path,
    mosquitto: Broker,
    mqtt_probe: Any,
    realtime_server: ThreadedRealtimeServer,
) -> Iterator[Speaker]:
    realtime_server.server.default_reply = Reply(audio=tone(400))
    config = settings_for(
        tmp_path,
        models_dir,
        None,
        audio={"input": "default"},
        endpoint={"start_timeout_s": 1.0},
        realtime={"url": realtime_server.url},
        mqtt={"host": "127.0.0.1", "port": mosquitto.port, "device_id": "surface"},
    )
    probe = mqtt_probe(mosquitto.port)
    probe.subscribe(f"{BASE}/#")
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        daemon, run = await start(config, api_key=API_KEY)
        box["daemon"], box["run"] = daemon, run
        task = asyncio.create_task(daemon.assistant.run())
        ready.set()
        try:
            await box.setdefault("stop", asyncio.Event()).wait()
        finally:
            await cancel_task(task)
            await daemon.aclose()

    def thread_main() -> None:
        box["stop"] = asyncio.Event()
        loop.run_until_complete(main())

    thread = threading.Thread(target=lambda: (asyncio.set_event_loop(loop), thread_main()), daemon=True)
    thread.start()
    assert ready.wait(60), "the daemon did not start"
    spk = Speaker(box["daemon"], box["run"], loop, probe)
    deadline = time.monotonic() + 10
    while not any(m.text == "online" for m in probe.on(f"{BASE}/availability")):
        assert time.monotonic() < deadline, "never online"
        time.sleep(0.05)
    try:
        yield spk
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(30)
        loop.close()


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(sequence=sequences, group=st.booleans())
def test_nothing_sent_can_wedge_the_speaker(
    speaker: Speaker, caplog: pytest.LogCaptureFixture, sequence: list[Cmd], group: bool
) -> None:
    failures = tasks.supervisor.failures
    caplog.set_level(logging.INFO)
    errors_before = len(speaker.errors())
    muted = speaker.state() == "muted"
    for n, cmd in enumerate(sequence):
        speaker.send(Cmd(cmd.topic, cmd.payload, cmd.valid, group=group and n % 2 == 0))
        if cmd.topic == "mute" and cmd.valid:
            muted = cmd.payload.decode().lower() in ("on", "true")
    speaker.settle(marker=37)

    assert speaker.state() == ("muted" if muted else "idle")
    new_errors = speaker.errors()[errors_before:]
    assert all(e.get("message") for e in new_errors), new_errors
    rejected = [e for e in new_errors if e["code"] == "bad_command"]
    expected = [c for c in sequence if not c.valid]
    assert len(rejected) == len(expected), (rejected, expected)
    for event, cmd in zip(rejected, expected, strict=True):
        assert event["topic"].endswith(f"/cmd/{cmd.topic}"), (event, cmd)
    assert tasks.supervisor.failures == failures, "a background task died"
    tracebacks = [
        r
        for r in caplog.records
        if (r.exc_info or "Traceback" in r.getMessage()) and r.name != SERVER_LOG.name  # the test server's own
    ]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
    if muted:  # leave the speaker unmuted for the next example
        speaker.send(ok("mute", "OFF"))
        speaker.settle(marker=39)
