"""The cascade responder's breaker and daily cap, driven directly (no daemon): only a real answer closes
the breaker, and while it is open (or the cap is reached) no request leaves at all."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from daemon.answer.budget import DailyCost
from daemon.answer.cascade.responder import CascadeResponder
from daemon.config.settings import Secrets, Settings
from daemon.observe import events as ev
from daemon.observe.bus import EventBus
from tests.cascade_server import ChatReply, ThreadedCascadeServer
from tests.fixtures_realtime import API_KEY, wait_until


def settings_for(url: str, tmp_path: Path, **cost: float) -> Settings:
    stage = {"base_url": url, "timeout_s": 1.0}
    return Settings.model_validate(
        {
            "conversation": {"backend": "cascade"},
            "cascade": {"stt": stage, "llm": stage, "tts": {**stage, "model": "gpt-4o-mini-tts"}},
            "fallback": {"breaker_failures": 1, "probe_min_s": 0.2, "probe_max_s": 0.4},
            "cost": cost,
            "paths": {"state": str(tmp_path)},
        }
    )


@pytest.fixture
async def responder(
    cascade_server: ThreadedCascadeServer, tmp_path: Path
) -> AsyncIterator[tuple[CascadeResponder, list[ev.Event]]]:
    bus = EventBus()
    seen: list[ev.Event] = []
    bus.subscribe_all(seen.append)
    cascade = CascadeResponder(settings_for(cascade_server.url, tmp_path), Secrets(openai_api_key=API_KEY), bus, None)
    try:
        yield cascade, seen
    finally:
        await cascade.aclose()


def fallbacks(seen: list[ev.Event]) -> list[str]:
    return [e.reason for e in seen if isinstance(e, ev.Fallback)]


async def spoken_request(cascade: CascadeResponder) -> int:
    """One spoken request (1 s of tone); returns the answer audio bytes."""
    t = np.arange(16_000) / 16_000
    cascade.prepare()
    cascade.append((np.sin(2 * np.pi * 300 * t) * 0.3 * 32767).astype("<i2").tobytes())
    return sum([len(c.pcm) async for c in cascade.answer()])


async def test_only_a_real_answer_closes_the_breaker(
    responder: tuple[CascadeResponder, list[ev.Event]], cascade_server: ThreadedCascadeServer
) -> None:
    cascade, seen = responder
    server = cascade_server.server
    server.faults.status = {"llm": 503}
    assert await spoken_request(cascade) == 0  # no local voice here: the fallback is an event only
    assert cascade.breaker.state == "open" and fallbacks(seen) == ["error"]
    before = server.record.count("stt")
    started = time.monotonic()
    await spoken_request(cascade)
    assert time.monotonic() - started < 0.1  # answered locally at once
    assert fallbacks(seen)[-1] == "breaker_open"
    # the prober keeps trying; a server that still fails keeps the breaker open
    refused = server.record.rejected
    await wait_until(lambda: sum(r[0] == "llm" for r in refused) >= 3, timeout_s=5, what="two probes")
    assert cascade.breaker.state == "open"
    assert server.record.count("stt") > before  # the probe tries every stage, not only a connection
    server.faults.status = {}
    server.default_reply = ChatReply("OK.")
    await wait_until(lambda: cascade.breaker.state == "closed", timeout_s=5, what="the breaker to close")
    assert await spoken_request(cascade) > 0
    assert [e.state for e in seen if isinstance(e, ev.BreakerChanged)] == ["open", "closed"]


async def test_the_daily_cap_stops_the_cascade(cascade_server: ThreadedCascadeServer, tmp_path: Path) -> None:
    DailyCost(tmp_path).add(0.5)
    bus = EventBus()
    seen: list[ev.Event] = []
    bus.subscribe_all(seen.append)
    settings = settings_for(cascade_server.url, tmp_path, daily_limit=0.25)
    cascade = CascadeResponder(settings, Secrets(openai_api_key=API_KEY), bus, None)
    try:
        await spoken_request(cascade)
    finally:
        await cascade.aclose()
    assert fallbacks(seen) == ["cost_limit"] and cascade_server.server.record.requests == []
    assert cascade.breaker.state == "closed"  # the user's budget says nothing about the servers


async def test_usage_is_priced_and_counted_per_stage(
    responder: tuple[CascadeResponder, list[ev.Event]], cascade_server: ThreadedCascadeServer
) -> None:
    cascade, seen = responder
    assert await spoken_request(cascade) > 0
    usage = {e.stage: e for e in seen if isinstance(e, ev.CascadeUsage)}
    assert usage["stt"].audio_s == pytest.approx(1.0, abs=0.01) and usage["stt"].cost_usd > 0
    assert usage["llm"].input_tokens and usage["llm"].output_tokens and usage["llm"].cost_usd > 0
    assert usage["tts"].characters and usage["tts"].audio_s and usage["tts"].cost_usd > 0
    done = [e for e in seen if isinstance(e, ev.ResponseDone)]
    total = sum(e.cost_usd for e in seen if isinstance(e, ev.CascadeUsage))
    assert len(done) == 1 and done[0].status == "completed" and done[0].cost_usd == pytest.approx(total, abs=1e-6)
    assert cascade.spend.spent_today == pytest.approx(total, abs=1e-6)
