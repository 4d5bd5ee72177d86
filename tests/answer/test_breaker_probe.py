"""The circuit breaker against a cloud that accepts connections but never answers (issue 9, item 4).

Only a real answer may close the breaker: a warm socket that stalls on every response must keep it open, so
each request is answered locally at once, until the server answers again.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from daemon.answer.realtime.responder import RealtimeResponder
from daemon.config.settings import Secrets, Settings
from daemon.observe import events as ev
from daemon.observe.bus import EventBus
from tests.fixtures_realtime import API_KEY, wait_until
from tests.realtime_server import ThreadedRealtimeServer

RESPONSE_TIMEOUT_S = 0.3


def speech16k(ms: int) -> bytes:
    t = np.arange(16 * ms) / 16_000
    return (np.sin(2 * math.pi * 300.0 * t) * 0.4 * 32767).astype("<i2").tobytes()


@pytest.fixture
async def responder(
    realtime_server: ThreadedRealtimeServer, tmp_path: Path
) -> AsyncIterator[tuple[RealtimeResponder, list[ev.Event]]]:
    settings = Settings.model_validate(
        {
            "realtime": {
                "url": realtime_server.url,
                "transcription_model": "",
                "connect_timeout": 1.0,
                "response_timeout": RESPONSE_TIMEOUT_S,
            },
            "fallback": {"breaker_failures": 1, "probe_min_s": 0.2, "probe_max_s": 0.4},
            "paths": {"state": str(tmp_path)},
        }
    )
    bus = EventBus()
    seen: list[ev.Event] = []
    bus.subscribe_all(seen.append)
    cloud = RealtimeResponder(settings, Secrets(openai_api_key=API_KEY), bus, voice=None)
    try:
        yield cloud, seen
    finally:
        await cloud.aclose()


async def ask(cloud: RealtimeResponder) -> tuple[float, int]:
    """One spoken request; returns (seconds until the answer ended, answer audio bytes)."""
    cloud.prepare()
    for i in range(0, 32000, 2560):
        cloud.append(speech16k(1000)[i : i + 2560])
    t0 = time.monotonic()
    audio = 0
    async for chunk in cloud.answer():
        audio += len(chunk.pcm)
    return time.monotonic() - t0, audio


def fallbacks(seen: list[ev.Event]) -> list[str]:
    return [e.reason for e in seen if isinstance(e, ev.Fallback)]


async def test_a_stalling_cloud_keeps_the_breaker_open_until_it_answers_again(
    realtime_server: ThreadedRealtimeServer, responder: tuple[RealtimeResponder, list[ev.Event]]
) -> None:
    cloud, seen = responder
    realtime_server.faults.stall = "first"  # connects, takes the request, never answers

    took, _ = await ask(cloud)
    assert fallbacks(seen) == ["timeout"] and took >= RESPONSE_TIMEOUT_S
    assert cloud.breaker.state == "open"

    # While it stalls, probes keep failing on the warm socket: every request is answered locally at once.
    for _ in range(6):
        took, _ = await ask(cloud)
        assert took < 0.1, f"a request waited {took:.2f} s while the breaker was open"
        await asyncio.sleep(0.2)
    await wait_until(lambda: len(realtime_server.record.out_of_band) >= 2, timeout_s=10, what="two probes")
    assert cloud.breaker.state == "open"
    assert set(fallbacks(seen)[1:]) == {"breaker_open"}
    assert cloud.client.connected  # the socket stayed open the whole time: connecting is not answering
    probe = realtime_server.record.out_of_band[0]
    assert probe["conversation"] == "none" and probe["output_modalities"] == ["text"]

    realtime_server.faults.stall = ""  # the cloud answers again: the next probe closes the breaker
    await wait_until(lambda: cloud.breaker.state == "closed", timeout_s=10, what="the breaker to close")
    assert [e.state for e in seen if isinstance(e, ev.BreakerChanged)] == ["open", "closed"]
    _, audio = await ask(cloud)
    assert audio > 0 and fallbacks(seen)[-1] == "breaker_open"  # the cloud answered, no new fallback
    assert not [item for item in realtime_server.record.items if "OK" in str(item)]  # probes left no trace
