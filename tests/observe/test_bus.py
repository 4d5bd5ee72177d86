"""The typed event bus and the trace records it feeds: what the trace, MQTT, metrics and STATUS rely on."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from daemon.observe import events as ev
from daemon.observe.bus import EventBus
from daemon.observe.trace import Trace, read


def test_subscribers_get_only_their_type_and_catch_alls_get_everything() -> None:
    bus = EventBus()
    states: list[ev.StateChanged] = []
    everything: list[ev.Event] = []
    bus.subscribe(ev.StateChanged, states.append)
    bus.subscribe_all(everything.append)
    bus.publish(ev.StateChanged("idle", "listening", "wake", "wake word hey_jarvis"))
    bus.publish(ev.VolumeChanged(40))
    assert [s.after for s in states] == ["listening"]
    assert [e.NAME for e in everything] == ["state", "volume"]


def test_a_failing_subscriber_is_logged_counted_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    seen: list[ev.Event] = []

    def broken(event: ev.MuteChanged) -> None:
        raise RuntimeError("dashboard bug")

    bus.subscribe(ev.MuteChanged, broken)
    bus.subscribe(ev.MuteChanged, seen.append)
    bus.subscribe_all(seen.append)
    with caplog.at_level(logging.ERROR, logger="daemon.observe.bus"):
        bus.publish(ev.MuteChanged(True))  # the publisher never sees the exception
    assert len(seen) == 2
    assert bus.failures == 1
    [line] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "broken" in line.getMessage() and "MuteChanged(on=True" in line.getMessage()
    assert line.exc_info is not None


def test_trace_lines_keep_the_names_and_fields_readers_know(tmp_path: Path) -> None:
    bus = EventBus()
    path = tmp_path / "trace.jsonl"
    trace = Trace(bus, path)
    bus.publish(ev.StateChanged("idle", "listening", "wake", "wake word hey_jarvis", t=1.5))
    bus.publish(ev.SpeechEnded(48000, t=2.0))
    bus.publish(ev.Committed(bytes=48000, audio_ms=1000, t=2.1))
    bus.publish(ev.Committed(by="server", t=2.2))
    bus.publish(ev.WakeDetected("hey_jarvis", 0.987, 16000, state="idle", t=3.0))
    trace.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {
        "t": 1.5,
        "event": "state",
        "from": "idle",
        "to": "listening",
        "trigger": "wake",
        "reason": "wake word hey_jarvis",
    }
    assert lines[1] == {"t": 2.0, "event": "speech_ended", "sample": 48000, "timed_out": False}
    assert lines[2] == {"t": 2.1, "event": "commit", "bytes": 48000, "audio_ms": 1000}  # no "by": None
    assert lines[3] == {"t": 2.2, "event": "commit", "by": "server"}
    assert lines[4]["event"] == "wake_detected" and lines[4]["state"] == "idle"
    assert read(path) == lines


def test_every_event_type_has_its_own_trace_name() -> None:
    kinds = [k for k in vars(ev).values() if isinstance(k, type) and issubclass(k, ev.Event) and k is not ev.Event]
    names = [k.NAME for k in kinds]
    assert all(names) and len(names) == len(set(names)), names
