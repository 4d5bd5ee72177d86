"""Issue 6, the fault matrix: the whole daemon (real wake word and VAD on real speech, real Mosquitto, the test
Realtime server, the PulseAudio rig where the device matters) through each fault a home will see. Every case
asserts what a person notices (an answer is heard, which fallback was spoken) and what Home Assistant sees
afterwards (retained `state` back to idle, `availability`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.core.assistant import cancel_task
from tests.answer.test_local_voice_e2e import speech_seconds
from tests.fixtures_audio import PulseRig
from tests.fixtures_mqtt import Broker, MqttProbe
from tests.fixtures_realtime import API_KEY, wait_until
from tests.harness import merge, settings_for, start, wait_for_event
from tests.realtime_server import Reply, ThreadedRealtimeServer, tone
from tests.speech import Speech

REPO = Path(__file__).resolve().parents[2]
DEVICE = "faults"
BASE = f"hark/{DEVICE}"
ProbeFactory = Callable[..., MqttProbe]


def fault_settings(tmp: Path, models_dir: Path, wav: Path | None, url: str, broker_port: int, **extra: Any):
    """Harness settings plus the broker (fast reconnect) and the server (short timeouts)."""
    base = {
        "realtime": {"url": url, "connect_timeout": 2.0, "response_timeout": 2.0},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "device_id": DEVICE, "reconnect_max_s": 2.0},
    }
    return settings_for(tmp, models_dir, wav, **merge(base, extra))


def loud_seconds(path: Path, level: int = 1000) -> float:
    """Seconds of the output WAV above `level`: the test's "did the speaker play the cloud's tone"."""
    with wave.open(str(path), "rb") as w:
        rate, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return float(np.count_nonzero(np.abs(pcm.astype(np.int32)) > level)) / rate


async def settled(probe: MqttProbe, topic: str, value: str, timeout_s: float = 15.0) -> None:
    """Wait until the LAST message on `topic` is `value` (what a retained-state consumer ends up showing)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        seen = [m.text for m in probe.on(f"{BASE}/{topic}")]
        if seen and seen[-1] == value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{BASE}/{topic} should end as {value!r}; saw {seen[-10:]}")
        await asyncio.sleep(0.05)


def watch(mqtt_probe: ProbeFactory, port: int) -> MqttProbe:
    probe = mqtt_probe(port)
    probe.subscribe(f"{BASE}/#")
    return probe


@contextlib.asynccontextmanager
async def daemon_running(settings: Any, key: str = API_KEY, trace_path: Path | None = None) -> AsyncIterator[Any]:
    """The daemon, its trace and its main task; closed (bounded) however the test ends."""
    daemon, run = await start(settings, api_key=key, trace_path=trace_path)
    task = asyncio.create_task(daemon.assistant.run())
    try:
        yield daemon, run, task
    finally:
        await cancel_task(task)
        await asyncio.wait_for(daemon.aclose(), 15)


async def until_done(task: asyncio.Task[int], timeout_s: float = 60.0) -> int:
    return await asyncio.wait_for(asyncio.shield(task), timeout_s)


@dataclass(frozen=True)
class Rig:
    """What every case needs: a private dir, the models, the test server, a broker and probes on it."""

    tmp: Path
    models_dir: Path
    server: ThreadedRealtimeServer
    broker: Broker
    probes: ProbeFactory

    def settings(self, wav: Path | None, url: str = "", **extra: Any) -> Any:
        return fault_settings(self.tmp, self.models_dir, wav, url or self.server.url, self.broker.port, **extra)

    def watch(self) -> MqttProbe:
        return watch(self.probes, self.broker.port)


@pytest.fixture
def rig(
    tmp_path: Path,
    models_dir: Path,
    realtime_server: ThreadedRealtimeServer,
    mosquitto: Broker,
    mqtt_probe: ProbeFactory,
) -> Rig:
    return Rig(tmp_path, models_dir, realtime_server, mosquitto, mqtt_probe)


@pytest.fixture
def one_turn(speech: Speech) -> Path:
    clip = speech.concat([speech.espeak("Hey Jarvis"), speech.espeak("What time is it")], [1.0, 0.4, 2.0])
    return speech.wav(clip, "fault-turn")


@pytest.fixture
def two_turns(speech: Speech) -> Path:
    parts = [speech.espeak("Hey Jarvis"), speech.espeak("What time is it")] * 2
    return speech.wav(speech.concat(parts, [1.0, 0.4, 6.0, 0.4, 2.0]), "fault-two-turns")


# --- the cloud misbehaves: the user still hears an answer; HA sees idle --------------------------------


@pytest.mark.parametrize(
    ("fault", "reasons"),
    [("refused", ["unreachable"]), ("401", ["auth"]), ("drop", ["dropped"]), ("stall", ["timeout"]), ("garbage", [])],
)
async def test_cloud_fault_is_answered_and_mqtt_settles(
    rig: Rig, one_turn: Path, closed_port_url: str, fault: str, reasons: list[str]
) -> None:
    server, url, key = rig.server, rig.server.url, API_KEY
    server.server.default_reply = Reply(audio=tone(3000 if fault == "drop" else 1500))
    if fault == "refused":
        url = closed_port_url
    elif fault == "401":
        key = "sk-wrong"
    elif fault == "drop":
        server.faults.drop_after_ms = 600
    elif fault == "stall":
        server.faults.stall = "mid"  # the answer starts, then nothing: the watchdog must notice
    elif fault == "garbage":
        server.faults.garbage = True
    probe = rig.watch()
    async with daemon_running(rig.settings(one_turn, url), key) as (_d, run, task):
        assert await until_done(task) == 0
        assert [r["reason"] for r in run.events("fallback")] == reasons
        assert run.states() == ["listening", "processing", "responding", "idle"]
        if reasons:
            assert speech_seconds(rig.tmp / "out.wav") > 0.8, "the fallback sentence was not heard"
        else:
            assert loud_seconds(rig.tmp / "out.wav") > 1.2, "the cloud's answer was not played"
            assert len(run.events("response_done")) == 1
        await settled(probe, "state", "idle")
        await settled(probe, "availability", "online")
        errors = [json.loads(m.text) for m in probe.on(f"{BASE}/event") if json.loads(m.text)["event"] == "error"]
        if reasons:  # every cloud error reaches MQTT with its code and a message a person can act on
            assert errors and all(e["code"] and e["message"] for e in errors), errors
    await settled(probe, "availability", "offline")


async def test_expired_session_reconnects_for_the_next_turn(rig: Rig, two_turns: Path) -> None:
    rig.server.server.default_reply = Reply(audio=tone(800))
    probe = rig.watch()
    async with daemon_running(rig.settings(two_turns, audio={"realtime_pace": True})) as (_d, run, task):
        await wait_for_event(run, "response_done", timeout_s=30)
        await asyncio.to_thread(rig.server.expire_all)  # the 60-minute limit, between two turns
        assert await until_done(task) == 0
        assert run.events("fallback") == [], "the second turn should be answered by the cloud, not locally"
        assert len(run.events("response_done")) == 2
        assert rig.server.record.connections >= 2
        assert run.states().count("idle") == 2
        await settled(probe, "state", "idle")


# --- the broker misbehaves: answers never wait for it; state reappears when it returns -------------------


async def test_broker_down_at_start_then_up(rig: Rig, one_turn: Path) -> None:
    rig.broker.stop()
    async with daemon_running(rig.settings(one_turn)) as (_d, run, task):
        assert await until_done(task) == 0
        assert len(run.events("response_done")) == 1 and run.events("fallback") == []
        assert loud_seconds(rig.tmp / "out.wav") > 0.8
        rig.broker.start()
        probe = rig.watch()
        await settled(probe, "availability", "online")
        await settled(probe, "state", "idle")


async def test_broker_restart_republishes_state(rig: Rig, one_turn: Path) -> None:
    async with daemon_running(rig.settings(one_turn)) as (_d, _run, task):
        assert await until_done(task) == 0
        await settled(rig.watch(), "state", "idle")
        rig.broker.restart()  # no persistence: every retained value is gone until the daemon sends it again
        after = rig.watch()
        await settled(after, "availability", "online")
        await settled(after, "state", "idle")
        late = rig.watch()  # a consumer that connects now still learns the state
        await settled(late, "state", "idle", timeout_s=5)
        assert late.on(f"{BASE}/state")[0].retain, "state should be retained"


# --- the sound card vanishes and returns ----------------------------------------------------------------


async def test_audio_device_vanishes_and_returns(rig: Rig, pulse_rig: PulseRig, speech: Speech) -> None:
    rig.server.server.default_reply = Reply(audio=tone(800))
    probe = rig.watch()
    async with daemon_running(rig.settings(None, audio={"reopen_max_s": 1.0})) as (_d, run, _task):
        await settled(probe, "state", "idle")
        try:
            pulse_rig.unplug()
            await settled(probe, "state", "error", timeout_s=20)
        finally:
            pulse_rig.replug()
        await settled(probe, "state", "idle", timeout_s=20)
        await pulse_rig.mic_opened()  # the clip's leading second of silence covers capture's start-up
        clip = speech.concat([speech.espeak("Hey Jarvis"), speech.espeak("What time is it")], [1.0, 0.4, 1.5])
        player = pulse_rig.start_play_into_mic(speech.wav(clip, "fault-after-replug"))
        try:
            await wait_for_event(run, "response_done", timeout_s=30)
            await wait_for_event(run, "state", timeout_s=20, to="idle", trigger="answer_done")
        finally:
            player.wait(timeout=15)
        assert run.events("device_lost") and run.events("device_restored")
        await settled(probe, "state", "idle")


# --- the process itself: SIGTERM mid-answer, full disk, bad config -------------------------------------


def write_config(tmp: Path, wav: Path, models_dir: Path, url: str, broker_port: int, extra: str = "") -> Path:
    path = tmp / "config.toml"
    path.write_text(
        f"""
[audio]
input = "wav:{wav}"
output = "wav:{tmp / "out.wav"}"
realtime_pace = true
[paths]
models = "{models_dir}"
state = "{tmp / "state"}"
[chimes]
wake = ""
done = ""
error = ""
[conversation]
followup_seconds = 0
[realtime]
url = "{url}"
transcription_model = ""
[mqtt]
host = "127.0.0.1"
port = {broker_port}
device_id = "{DEVICE}"
{extra}
"""
    )
    return path


def hark(tmp: Path, *args: str) -> subprocess.Popen[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp), "OPENAI_API_KEY": API_KEY}
    env.update({k: v for k, v in os.environ.items() if k.startswith("PULSE")})
    return subprocess.Popen(
        [sys.executable, "-m", "daemon", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def trace_shows(path: Path, event: str, **match: Any) -> bool:
    from daemon.observe import trace

    if not path.exists():
        return False
    with contextlib.suppress(ValueError):  # a half-written last line
        return any(r["event"] == event and all(r.get(k) == v for k, v in match.items()) for r in trace.read(path))
    return False


@pytest.fixture
def child() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes this test started; killed (by their own pid) if the test fails before they end."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


async def test_sigterm_mid_answer_exits_cleanly(rig: Rig, one_turn: Path, child: list[subprocess.Popen[str]]) -> None:
    realtime_server = rig.server
    realtime_server.server.default_reply = Reply(audio=tone(20_000))  # paced: still talking when stopped
    probe = rig.watch()
    cfg = write_config(rig.tmp, one_turn, rig.models_dir, realtime_server.url, rig.broker.port)
    trace_path = rig.tmp / "trace.jsonl"
    proc = hark(rig.tmp, "--config", str(cfg), "run", "--trace", str(trace_path))
    child.append(proc)
    deadline = time.monotonic() + 90
    while not trace_shows(trace_path, "state", to="responding"):
        assert proc.poll() is None, f"hark run ended early ({proc.returncode}): {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "the daemon never started answering"
        await asyncio.sleep(0.1)
    await settled(probe, "state", "responding")
    assert realtime_server.open_sessions >= 1
    proc.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.to_thread(proc.wait, 2.0)
    except subprocess.TimeoutExpired:
        pytest.fail("hark run did not exit within 2 s of SIGTERM")
    assert code == 0, proc.communicate()[1][-2000:]
    await settled(probe, "availability", "offline", timeout_s=5)
    await settled(probe, "state", "idle", timeout_s=5)  # a dashboard must not show a speaker still talking
    await wait_until(lambda: realtime_server.open_sessions == 0, 5.0, "the server to see the websocket close")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, almost filled: the trace runs out of space within the first turn."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        filler = mnt / "filler"
        with filler.open("wb") as f, contextlib.suppress(OSError):
            f.write(b"\0" * (64 * 1024))
        filler.write_bytes(b"\0" * (filler.stat().st_size - 4096))  # one page free for the first lines
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


async def test_full_disk_drops_trace_lines_not_answers(rig: Rig, two_turns: Path, tiny_disk: Path) -> None:
    rig.server.server.default_reply = Reply(audio=tone(800))
    probe = rig.watch()
    settings = rig.settings(two_turns, audio={"realtime_pace": True})
    trace_path = tiny_disk / "trace.jsonl"
    old = '{"event": "from an earlier run"}\n' * 90  # ~3 KB: the last free page fills during the first turn
    trace_path.write_text(old)
    async with daemon_running(settings, trace_path=trace_path) as (daemon, run, task):
        assert await until_done(task) == 0
        assert len(run.events("response_done")) == 2, "the daemon stopped answering when the disk filled"
        assert run.events("fallback") == []
        assert loud_seconds(rig.tmp / "out.wav") > 1.2
        await settled(probe, "state", "idle")
        trace: Any = daemon.trace
    assert trace.dropped > 0, f"the disk never filled ({trace_path.stat().st_size} bytes of trace)"
    assert len(old) < trace_path.stat().st_size <= 4096, "the first new lines should have been written"


@pytest.mark.parametrize(
    ("extra", "named"),
    [("[wake]\nthreshhold = 0.5\n", "threshhold"), ("[audio2]\nvolume = 50\n", "audio2")],
    ids=["typo_key", "unknown_section"],
)
def test_bad_config_exits_78_naming_the_key(tmp_path: Path, models_dir: Path, extra: str, named: str) -> None:
    wav = tmp_path / "none.wav"
    cfg = write_config(tmp_path, wav, models_dir, "ws://127.0.0.1:9/v1", 9, extra)
    proc = hark(tmp_path, "--config", str(cfg), "run")
    try:
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 78, err
    assert named in err, f"the message should name {named!r}: {err}"
