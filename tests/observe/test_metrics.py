"""Metrics fed by real events on the bus and scraped over HTTP, the way Prometheus sees them."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from daemon.observe import events as ev
from daemon.observe.bus import EventBus
from daemon.observe.metrics import Metrics


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


def value(m: Metrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_counts_a_conversation_from_events(bus: EventBus) -> None:
    m = Metrics(bus)
    usage = {"input_text": 120, "input_audio": 30, "input_cached": 0, "output_text": 10, "output_audio": 90}
    for event in (
        ev.WakeDetected("hey_jarvis", 0.98, 16000, t=10.0),
        ev.SpeechEnded(48000, t=12.0),
        ev.PlaybackStarted(24000, t=12.6),
        ev.WakeDetected("hey_jarvis", 0.95, 60000, t=14.0),  # barge-in
        ev.PlaybackStopped(1400, "stopped", t=14.15),
        ev.ResponseDone("cancelled", usage, 0.0125),
        ev.WakeDetected("alexa", 0.9, 90000, t=20.0),
        ev.RealtimeError("session_expired", "Your session hit the maximum duration of 60 minutes."),
        ev.Fallback("unreachable", "Sorry, I can't reach the internet right now."),
        ev.SpeechEnded(120000, t=22.0),
        ev.PlaybackStarted(24000, t=22.4),
        ev.PlaybackStopped(900, "drained", t=23.3),
    ):
        bus.publish(event)
    assert value(m, "hark_turns_total") == 2
    assert value(m, "hark_wake_detections_total", model="hey_jarvis") == 2
    assert value(m, "hark_wake_detections_total", model="alexa") == 1
    assert value(m, "hark_fallbacks_total", reason="unreachable") == 1
    assert value(m, "hark_errors_total", code="session_expired") == 1
    assert value(m, "hark_tokens_total", kind="input_audio") == 30
    assert value(m, "hark_tokens_total", kind="output_audio") == 90
    assert value(m, "hark_tokens_total", kind="input_cached") == 0
    assert value(m, "hark_cost_usd_total") == pytest.approx(0.0125)
    assert value(m, "hark_answer_latency_seconds_count") == 2
    assert value(m, "hark_answer_latency_seconds_sum") == pytest.approx(0.6 + 0.4)
    assert value(m, "hark_barge_in_latency_seconds_count") == 1  # the alexa wake came after playback ended
    assert value(m, "hark_barge_in_latency_seconds_sum") == pytest.approx(0.15)


def test_openai_shaped_usage_counts_details_not_totals(bus: EventBus) -> None:
    m = Metrics(bus)
    usage = {
        "total_tokens": 300,
        "input_tokens": 100,
        "output_tokens": 200,
        "input_token_details": {"text_tokens": 20, "audio_tokens": 80, "cached_tokens": 10},
        "output_token_details": {"text_tokens": 50, "audio_tokens": 150},
    }
    bus.publish(ev.ResponseDone("completed", usage, 0.01))
    assert value(m, "hark_tokens_total", kind="input_audio") == 80
    assert value(m, "hark_tokens_total", kind="input_cached") == 10
    assert value(m, "hark_tokens_total", kind="output_audio") == 150
    assert value(m, "hark_tokens_total", kind="input") == 0  # no double counting


def test_answer_latency_needs_an_end_of_speech_first(bus: EventBus) -> None:
    m = Metrics(bus)
    bus.publish(ev.PlaybackStarted(24000))  # an announcement: no request before it
    assert value(m, "hark_answer_latency_seconds_count") == 0


def test_served_over_http_on_localhost(bus: EventBus) -> None:
    m = Metrics(bus)
    bus.publish(ev.WakeDetected("hey_jarvis", 0.99, 0))
    port = m.start(free_port())
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
        assert 'hark_wake_detections_total{model="hey_jarvis"} 1.0' in body
        assert "hark_answer_latency_seconds_bucket" in body
        assert "python_gc" not in body  # own registry, not the process-global one
    finally:
        m.stop()


def test_port_zero_is_off_and_a_taken_port_is_named() -> None:
    assert Metrics().start(0) == 0
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1:{port}.*free \\[metrics\\] port"):
            Metrics().start(port)


def test_registries_are_independent() -> None:
    bus = EventBus()
    a, b = Metrics(bus), Metrics()
    bus.publish(ev.SpeechEnded(16000))
    assert value(a, "hark_turns_total") == 1 and value(b, "hark_turns_total") == 0
