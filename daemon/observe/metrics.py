"""Prometheus metrics derived from the event bus, so no part of the pipeline has to know metrics exist.

Every event carries its monotonic time; counting and timing them here keeps one source of truth (a latency
in Grafana is the same number a benchmark reads from the trace file).

Events read (one handler per type):
  WakeDetected {model}             → hark_wake_detections_total{model}
  SpeechEnded                      → hark_turns_total, starts the answer-latency clock
  PlaybackStarted                  → hark_answer_latency_seconds (since SpeechEnded)
  PlaybackStopped                  → hark_barge_in_latency_seconds (if a wake word came while playing)
  Fallback {reason}                → hark_fallbacks_total{reason}
  RealtimeError {code}, Error {code} → hark_errors_total{code}
  ResponseDone {usage, cost_usd}   → hark_tokens_total{kind}, hark_cost_usd_total
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from daemon.observe import events as ev
from daemon.observe.bus import EventBus
from daemon.observe.events import SpeechEnded, WakeDetected

log = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0)
BARGE_IN_BUCKETS_S = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0)


class Metrics:
    """Subscribes to a Trace and keeps counters/histograms in its own registry (tests can make many)."""

    def __init__(self, bus: EventBus | None = None, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.turns = Counter("hark_turns", "User requests heard to their end (speech ended)", registry=r)
        self.wakes = Counter("hark_wake_detections", "Wake-word detections", ["model"], registry=r)
        self.fallbacks = Counter("hark_fallbacks", "Answers spoken by the local voice", ["reason"], registry=r)
        self.errors = Counter("hark_errors", "Errors by code (Realtime error codes and others)", ["code"], registry=r)
        self.tokens = Counter("hark_tokens", "Realtime tokens by kind", ["kind"], registry=r)
        self.cost = Counter("hark_cost_usd", "Estimated cloud spend in USD (list prices from [cost])", registry=r)
        self.answer_latency = Histogram(
            "hark_answer_latency_seconds",
            "End of user speech to the first answer sample at the speaker",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.barge_in_latency = Histogram(
            "hark_barge_in_latency_seconds",
            "Wake word during an answer to playback stopped",
            buckets=BARGE_IN_BUCKETS_S,
            registry=r,
        )
        self._speech_ended_t: float | None = None
        self._playing = False
        self._barge_in_t: float | None = None
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        if bus is not None:
            self.attach(bus)

    def attach(self, bus: EventBus) -> None:
        bus.subscribe(WakeDetected, self._on_wake)
        bus.subscribe(SpeechEnded, self._on_speech_ended)
        bus.subscribe(ev.PlaybackStarted, lambda e: self._on_playback_started(e.t))
        bus.subscribe(ev.PlaybackStopped, lambda e: self._on_playback_stopped(e.t))
        bus.subscribe(ev.Fallback, lambda e: self.fallbacks.labels(reason=e.reason).inc())
        bus.subscribe(ev.ResponseDone, self._on_response_done)
        bus.subscribe(ev.RealtimeError, lambda e: self.errors.labels(code=e.code).inc())
        bus.subscribe(ev.Error, lambda e: self.errors.labels(code=e.code).inc())

    def _on_wake(self, event: WakeDetected) -> None:
        self.wakes.labels(model=event.model).inc()
        if self._playing and self._barge_in_t is None:
            self._barge_in_t = event.t

    def _on_speech_ended(self, event: SpeechEnded) -> None:
        self.turns.inc()
        self._speech_ended_t = event.t

    def _on_playback_started(self, now: float) -> None:
        self._playing = True
        self._barge_in_t = None
        if self._speech_ended_t is not None and now >= self._speech_ended_t:
            self.answer_latency.observe(now - self._speech_ended_t)
        self._speech_ended_t = None  # only the first answer audio of a turn counts

    def _on_playback_stopped(self, now: float) -> None:
        if self._barge_in_t is not None and now >= self._barge_in_t:
            self.barge_in_latency.observe(now - self._barge_in_t)
        self._playing = False
        self._barge_in_t = None

    def _on_response_done(self, event: ev.ResponseDone) -> None:
        for kind, count in _token_counts(event.usage).items():
            self.tokens.labels(kind=kind).inc(count)
        if event.cost_usd > 0:
            self.cost.inc(event.cost_usd)

    def start(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics on host:port in a daemon thread; port 0 = off. Returns the port (0 if off)."""
        if port == 0:
            return 0
        if self._server is not None:
            raise RuntimeError("metrics server already started; call stop() first")
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise OSError(
                f"metrics: cannot listen on {host}:{port} ({e.strerror}); set a free [metrics] port (0 = off)"
            ) from e
        log.info("metrics served at http://%s:%d/metrics", host, port)
        return port

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None


def _token_counts(usage: Any) -> dict[str, int]:
    """Flatten a usage object (dataclass, pydantic model or dict) to {kind: tokens}, skipping totals."""
    if usage is None:
        return {}
    if dataclasses.is_dataclass(usage) and not isinstance(usage, type):
        usage = dataclasses.asdict(usage)
    elif hasattr(usage, "model_dump"):
        usage = usage.model_dump()
    if not isinstance(usage, dict):
        return {}
    out: dict[str, int] = {}
    _flatten(usage, "", out)
    return out


def _flatten(node: dict[str, Any], prefix: str, out: dict[str, int]) -> None:
    """OpenAI style: input_tokens=100 beside input_token_details={text_tokens, ...}: count the details."""
    detailed = {k.removesuffix("_token_details") for k, v in node.items() if isinstance(v, dict)}
    for key, value in node.items():
        name = key.removesuffix("_token_details").removesuffix("_tokens")
        if isinstance(value, dict):
            _flatten(value, f"{prefix}{name}_", out)
        elif isinstance(value, int) and not isinstance(value, bool) and value > 0:
            if "total" in key or name in detailed:
                continue
            out[prefix + name] = out.get(prefix + name, 0) + value
