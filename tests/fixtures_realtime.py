"""Fixtures for the realtime rig: the protocol-faithful test server and a client wired to it."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from daemon.answer.realtime.client import RealtimeClient
from daemon.answer.tools import ToolRegistry
from daemon.config.settings import CostSettings, RealtimeSettings
from daemon.observe.bus import EventBus
from tests.realtime_server import ThreadedRealtimeServer
from tests.records import record_into

API_KEY = "sk-test-hark"


class TraceLog:
    """An event bus whose trace records a test can read back."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.bus = record_into(EventBus(), self.records.append)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["event"] == name]

    def names(self) -> list[str]:
        return [r["event"] for r in self.records]


@pytest.fixture
def realtime_server() -> Iterator[ThreadedRealtimeServer]:
    """A test Realtime server on a free port, in its own thread; 20 ms chunks paced in real time."""
    server = ThreadedRealtimeServer(api_key=API_KEY, chunk_ms=20).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def closed_port_url() -> str:
    """A websocket URL on which nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}/v1"


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    """Poll `predicate` until true; fail the test (not hang) after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def make_client() -> AsyncIterator[Callable[..., tuple[RealtimeClient, TraceLog]]]:
    """`make_client(url, api_key=..., cost=CostSettings(), tools=ToolRegistry(), **realtime_settings)`."""
    clients: list[RealtimeClient] = []
    logs: list[TraceLog] = []

    def make(
        url: str,
        api_key: str = API_KEY,
        cost: CostSettings | None = None,
        tools: ToolRegistry | None = None,
        **settings: Any,
    ) -> tuple[RealtimeClient, TraceLog]:
        tlog = TraceLog()
        settings.setdefault("transcription_model", "")
        client = RealtimeClient(
            RealtimeSettings(url=url, **settings),
            cost or CostSettings(),
            api_key,
            tools or ToolRegistry(),
            tlog.bus,
        )
        clients.append(client)
        logs.append(tlog)
        return client, tlog

    yield make
    for client in clients:
        await client.close()
    for tlog in logs:  # every error a person may see says what happened
        assert all(r["message"] for r in tlog.events("realtime_error")), tlog.events("realtime_error")
