"""Metrics fed by real Trace records and scraped over HTTP, the way Prometheus sees them."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from daemon.observe.metrics import Metrics
from daemon.observe.trace import Trace


@dataclass(frozen=True)
class Usage:
    """Shaped like daemon.answer.realtime.client's usage: tokens by modality."""

    input_text: int
    input_audio: int
    input_cached: int
    output_text: int
    output_audio: int


@pytest.fixture
def trace() -> Iterator[Trace]:
    t = Trace()
    yield t
    t.close()


def value(m: Metrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_counts_a_conversation_from_trace_records(trace: Trace) -> None:
    m = Metrics(trace)
    trace.emit("wake_detected", model="hey_jarvis", score=0.98, sample=16000, t=10.0)
    trace.emit("speech_ended", sample=48000, t=12.0)
    trace.emit("playback_started", t=12.6)
    trace.emit("wake_detected", model="hey_jarvis", score=0.95, sample=60000, t=14.0)  # barge-in
    trace.emit("playback_stopped", played_ms=1400, reason="stopped", t=14.15)
    trace.emit(
        "response_done",
        status="cancelled",
        cost_usd=0.0125,
        usage=Usage(input_text=120, input_audio=30, input_cached=0, output_text=10, output_audio=90),
    )
    trace.emit("wake_detected", model="alexa", score=0.9, sample=90000, t=20.0)
    trace.emit("realtime_error", code="session_expired")
    trace.emit("fallback", reason="unreachable")
    trace.emit("speech_ended", sample=120000, t=22.0)
    trace.emit("playback_started", t=22.4)
    trace.emit("playback_stopped", played_ms=900, reason="drained", t=23.3)

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


def test_openai_shaped_usage_counts_details_not_totals(trace: Trace) -> None:
    m = Metrics(trace)
    usage = {
        "total_tokens": 300,
        "input_tokens": 100,
        "output_tokens": 200,
        "input_token_details": {"text_tokens": 20, "audio_tokens": 80, "cached_tokens": 10},
        "output_token_details": {"text_tokens": 50, "audio_tokens": 150},
    }
    trace.emit("response_done", status="completed", usage=usage, cost_usd=0.01)
    assert value(m, "hark_tokens_total", kind="input_audio") == 80
    assert value(m, "hark_tokens_total", kind="input_cached") == 10
    assert value(m, "hark_tokens_total", kind="output_audio") == 150
    assert value(m, "hark_tokens_total", kind="input") == 0  # no double counting


def test_odd_records_do_not_break_counting(trace: Trace) -> None:
    m = Metrics(trace)
    trace.emit("playback_started")  # no speech_ended before: no latency
    trace.emit("response_done", usage="garbage", cost_usd="free")
    trace.emit("wake_detected")
    assert value(m, "hark_answer_latency_seconds_count") == 0
    assert value(m, "hark_wake_detections_total", model="unknown") == 1


def test_served_over_http_on_localhost(trace: Trace) -> None:
    m = Metrics(trace)
    trace.emit("wake_detected", model="hey_jarvis", score=0.99, sample=0)
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
    a, b = Metrics(), Metrics()
    a.on_record({"event": "speech_ended", "t": 1.0})
    assert value(a, "hark_turns_total") == 1 and value(b, "hark_turns_total") == 0
