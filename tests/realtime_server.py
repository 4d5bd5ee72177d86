"""A protocol-faithful OpenAI Realtime (GA) server for tests and benchmarks: only the model itself is fake.

The REAL openai SDK talks to it over a real websocket. It validates client events like the API
(tests/realtime_protocol.py), streams a scripted reply as paced 24 kHz PCM16 deltas, records everything it
receives, and can misbehave on demand (`Faults`). `ThreadedRealtimeServer` runs it on its own loop in a
thread, so a daemon in another loop or process can use it; `python -m tests.realtime_server --port P`
runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from tests.realtime_conn import Session

RATE_HZ = 24_000
# The server's own log: a client that gives up mid-handshake (a connect cancelled by Stop or Mute) is
# logged here with a traceback, and tests that check the daemon logged no traceback leave it out.
SERVER_LOG = logging.getLogger("tests.realtime_server")
BYTES_PER_MS = 48


def tone(ms: int, freq_hz: float = 440.0, amplitude: float = 0.3) -> bytes:
    """A known waveform: `ms` of a sine at 24 kHz PCM16 (tests compare the bytes that arrive)."""
    t = np.arange(RATE_HZ * ms // 1000) / RATE_HZ
    return (np.sin(2 * math.pi * freq_hz * t) * amplitude * 32767).astype("<i2").tobytes()


@dataclass
class Reply:
    """One scripted answer: audio (or text in text mode) with its transcript, or a function call."""

    transcript: str = "It is a lovely day in the neighbourhood."
    audio: bytes = field(default_factory=lambda: tone(1000))
    function_call: tuple[str, str] | None = None
    """(name, arguments JSON): the reply is a function call instead of speech."""


@dataclass
class Faults:
    """Misbehaviour on demand; set fields from a test at any time (read at the moment they matter)."""

    handshake_status: int | None = None
    """Answer the websocket upgrade with this HTTP status (e.g. 403, 503)."""
    drop_after_ms: int | None = None
    """Abort the TCP connection after this much reply audio was sent."""
    stall: str = ""
    """"first": never send a delta; "mid": stop after `stall_after_ms` of audio (connection stays open)."""
    stall_after_ms: int = 200
    garbage: bool = False
    """Send unknown event types, malformed fields and a non-JSON frame before each reply."""
    expire_after_s: float | None = None
    """Each session expires this long after it starts (error session_expired, then close 1001)."""


@dataclass
class Record:
    """Everything the server received, for assertions (appended from the server thread)."""

    connections: int = 0
    handshakes: list[dict[str, str]] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    commits: list[int] = field(default_factory=list)
    """Bytes in the buffer at each successful commit."""
    truncates: list[dict[str, Any]] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    """Effective session config after each accepted session.update."""
    items: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    """`error` objects sent back (code, message, param)."""
    responses: list[dict[str, Any]] = field(default_factory=list)
    """Each response.done sent: id, status, output kinds."""
    out_of_band: list[dict[str, Any]] = field(default_factory=list)
    """`response` parameters of each response requested outside the conversation (conversation: none)."""

    def count(self, event_type: str) -> int:
        return self.event_types.count(event_type)

    def error_codes(self) -> list[str]:
        return [str(e.get("code")) for e in self.errors]


class RealtimeTestServer:
    """The server, on the caller's event loop. `start()` → `url`; `stop()`."""

    def __init__(
        self,
        *,
        api_key: str = "sk-test",
        chunk_ms: int = 40,
        first_delta_delay_ms: int = 0,
        realtime_pace: bool = True,
        user_transcript: str = "what time is it",
    ) -> None:
        self.api_key = api_key
        self.chunk_ms = chunk_ms
        self.first_delta_delay_ms = first_delta_delay_ms
        self.realtime_pace = realtime_pace
        self.user_transcript = user_transcript
        self.replies: deque[Reply] = deque()
        self.default_reply = Reply()
        self.faults = Faults()
        self.record = Record()
        self.ids = itertools.count(1)
        self._server: Server | None = None
        self._sessions: set[Session] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1"

    @property
    def open_sessions(self) -> int:
        """Websockets currently connected."""
        return len(self._sessions)

    def next_reply(self) -> Reply:
        return self.replies.popleft() if self.replies else self.default_reply

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self.ids):06d}"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await serve(
            self._handle,
            host,
            port,
            process_request=self._check_handshake,
            max_size=None,
            compression=None,
            logger=SERVER_LOG,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def expire_all(self) -> None:
        for session in list(self._sessions):
            await session.expire()

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        self.record.handshakes.append({"path": request.path, **headers})
        status, body = self._handshake_verdict(request.path, headers)
        if status is None:
            return None
        self.record.rejected.append(status)
        return connection.respond(status, json.dumps({"error": body}) + "\n")

    def _handshake_verdict(self, path: str, headers: dict[str, str]) -> tuple[int | None, dict[str, str]]:
        if self.faults.handshake_status is not None:
            return self.faults.handshake_status, {"message": "injected fault", "code": "test_fault"}
        if "openai-beta" in headers:
            return HTTPStatus.BAD_REQUEST, {
                "message": "The beta Realtime API (OpenAI-Beta header) is retired; use the GA interface.",
                "code": "beta_retired",
            }
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return HTTPStatus.UNAUTHORIZED, {
                "message": "Incorrect API key provided.",
                "code": "invalid_api_key",
            }
        if not path.startswith("/v1/realtime") or "model=" not in path:
            return HTTPStatus.BAD_REQUEST, {
                "message": f"expected /v1/realtime?model=..., got {path}",
                "code": "invalid_request",
            }
        return None, {}

    async def _handle(self, ws: ServerConnection) -> None:
        self.record.connections += 1
        model = ws.request.path.partition("model=")[2].partition("&")[0] if ws.request else "gpt-realtime"
        session = Session(self, ws, model)
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)


class ThreadedRealtimeServer:
    """The server on its own loop in a daemon thread: robust against a blocked or foreign test loop."""

    def __init__(self, **kwargs: Any) -> None:
        self.server = RealtimeTestServer(**kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="realtime-test-server", daemon=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)

    def start(self, port: int = 0) -> ThreadedRealtimeServer:
        self._thread.start()
        self.call(self.server.start(port=port))
        return self

    def call(self, coro: Any, timeout_s: float = 10.0) -> Any:
        """Run a coroutine on the server's loop and wait for it (bounded)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def expire_all(self) -> None:
        self.call(self.server.expire_all())

    def stop(self) -> None:
        if self._thread.is_alive():
            self.call(self.server.stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop.close()


def main() -> None:
    ap = argparse.ArgumentParser(description="Fake OpenAI Realtime (GA) server for benchmarks")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--api-key", default="sk-test")
    ap.add_argument("--chunk-ms", type=int, default=40)
    ap.add_argument("--first-delta-ms", type=int, default=0)
    ap.add_argument("--reply-ms", type=int, default=1500, help="length of the reply tone")
    args = ap.parse_args()

    async def serve_forever() -> None:
        server = RealtimeTestServer(
            api_key=args.api_key, chunk_ms=args.chunk_ms, first_delta_delay_ms=args.first_delta_ms
        )
        server.default_reply = Reply(audio=tone(args.reply_ms))
        await server.start(port=args.port)
        print(f"realtime test server on {server.url}", flush=True)
        await asyncio.Event().wait()

    try:
        asyncio.run(serve_forever())
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
