"""The OpenAI Realtime (GA) session: connect, stream the user's audio, receive the answer, cancel, tools.

One `RealtimeClient` per daemon. The assistant drives it per turn: `open()` (parallel with listening, so
connection time is never added after the user stops), `append()` frames, `commit()` or `ask()`, iterate
`events()`, `cancel()` on barge-in. All sends go through one ordered outbox: audio buffered before the
session is ready is flushed first, in order, and nothing at all is sent before `open()`. Every failure
arrives as a `Failure` (or `RealtimeFailure` from `open()`) whose reason names a spoken fallback message.
Receiving and translating server events lives in `daemon/realtime_receive.py`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from websockets.exceptions import InvalidStatus, WebSocketException

from daemon.answer.fallback import DailyCost
from daemon.answer.realtime.protocol import (
    BYTES_PER_MS,
    MIN_COMMIT_MS,
    RATE_HZ,
    Failure,
    FailureReason,
    RealtimeEvent,
    RealtimeFailure,
    ResponseDone,
    session_payload,
)
from daemon.answer.realtime.receive import Receiver
from daemon.answer.tools import ToolRegistry
from daemon.audio.frames import INPUT_RATE_HZ
from daemon.audio.resample import StreamResampler
from daemon.config.settings import CostSettings, RealtimeSettings
from daemon.observe.trace import Trace

log = logging.getLogger(__name__)

Send = Callable[[AsyncRealtimeConnection], Awaitable[None]]
CLOSE_TIMEOUT_S = 2.0


class RealtimeClient(Receiver):
    """A warm, reusable Realtime session; see the module docstring for the turn protocol."""

    def __init__(
        self,
        settings: RealtimeSettings,
        cost: CostSettings,
        api_key: str,
        tools: ToolRegistry,
        trace: Trace,
        *,
        spend: DailyCost | None = None,
    ) -> None:
        super().__init__(settings, cost, tools, trace)
        self.spend = spend
        self._api_key = api_key.strip()
        self._opening: asyncio.Task[None] | None = None
        self._resampler = StreamResampler(INPUT_RATE_HZ, RATE_HZ)
        self._turn_bytes = 0
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and configure (or reuse the warm session). Raises RealtimeFailure with a reason."""
        limit = self._cost.daily_limit
        over = self.spend.over(limit) if self.spend is not None else self.daily.over(limit)
        if over:
            spent = self.spend.spent_today if self.spend is not None else self.daily.cost_usd
            raise RealtimeFailure(
                FailureReason.COST_LIMIT,
                f"today's estimated spend ${spent:.2f} reached cost.daily_limit "
                f"${self._cost.daily_limit:.2f}; the cloud is used again tomorrow",
            )
        if self._conn is not None:
            self._touch()
            return
        if self._opening is None or self._opening.done():
            self._opening = asyncio.create_task(self._connect())
        await self._opening

    async def _connect(self) -> None:
        if not self._api_key:
            raise RealtimeFailure(
                FailureReason.NO_API_KEY,
                "OPENAI_API_KEY is not set; put it in /etc/hark/env (or the environment) and restart",
            )
        self._trace.emit("realtime_connecting", model=self._settings.model, url=self._settings.url or "openai")
        t0 = time.monotonic()
        deadline = t0 + self._settings.connect_timeout
        try:
            conn = await self._handshake()
            try:
                payload: Any = session_payload(self._settings, self._tools.definitions())
                await conn.session.update(session=payload)
                await asyncio.wait_for(self._await_session(conn), max(0.01, deadline - time.monotonic()))
            except BaseException:
                await _close_quietly(conn)
                raise
        except RealtimeFailure:
            raise  # already traced and logged where it was decided
        except asyncio.TimeoutError:
            raise self._connect_failed(
                FailureReason.UNREACHABLE, f"no session.updated within {self._settings.connect_timeout:g} s"
            ) from None
        except (WebSocketException, OSError) as e:
            raise self._connect_failed(FailureReason.UNREACHABLE, f"connection lost during setup: {e}") from e
        self._attach(conn)
        setup_ms = round((time.monotonic() - t0) * 1000, 1)
        self._trace.emit("realtime_connected", setup_ms=setup_ms)
        log.info("Realtime session ready in %.0f ms (model %s)", setup_ms, self._settings.model)

    def _connect_failed(self, reason: FailureReason, detail: str, code: str = "") -> RealtimeFailure:
        self._trace.emit("realtime_error", code=code or reason.value, reason=reason.value)
        log.warning("Realtime session not available (%s): %s", reason.value, detail)
        return RealtimeFailure(reason, detail, code)

    async def _handshake(self) -> AsyncRealtimeConnection:
        url = self._settings.url or None
        client = AsyncOpenAI(api_key=self._api_key, websocket_base_url=url, max_retries=0)
        where = url or "the OpenAI API"
        timeout = self._settings.connect_timeout
        try:
            return await asyncio.wait_for(client.realtime.connect(model=self._settings.model).enter(), timeout)
        except asyncio.TimeoutError:
            raise self._connect_failed(
                FailureReason.UNREACHABLE,
                f"{where}: no connection within {timeout:g} s (realtime.connect_timeout)",
            ) from None
        except InvalidStatus as e:
            status = e.response.status_code
            body = e.response.body.decode("utf-8", "replace")[:200] if e.response.body else ""
            if status in (401, 403):
                raise self._connect_failed(
                    FailureReason.AUTH,
                    f"{where} refused the API key (HTTP {status}): {body}; check OPENAI_API_KEY",
                    code=f"http_{status}",
                ) from e
            reason = FailureReason.UNREACHABLE if status >= 500 or status == 429 else FailureReason.ERROR
            raise self._connect_failed(reason, f"{where} answered HTTP {status}: {body}", f"http_{status}") from e
        except (OSError, WebSocketException) as e:
            raise self._connect_failed(
                FailureReason.UNREACHABLE,
                f"cannot connect to {where}: {e} (network down or realtime.url wrong?)",
            ) from e

    async def _await_session(self, conn: AsyncRealtimeConnection) -> None:
        """Wait for `session.updated`; an `error` here means our configuration was refused."""
        while True:
            try:
                event: Any = await conn.recv()
            except ValueError:
                continue
            kind = getattr(event, "type", None)
            if kind == "session.updated":
                return
            if kind == "error":
                code, message = str(event.error.code or event.error.type), str(event.error.message)
                raise self._connect_failed(FailureReason.ERROR, f"session.update refused: {code}: {message}", code=code)

    def _attach(self, conn: AsyncRealtimeConnection) -> None:
        self._conn = conn
        self._expired = False
        self._touch()
        self._tasks = [
            asyncio.create_task(self._read_loop(conn), name="realtime-read"),
            asyncio.create_task(self._send_loop(conn), name="realtime-send"),
            asyncio.create_task(self._idle_loop(conn), name="realtime-idle"),
        ]

    async def close(self) -> None:
        """End the session (the next open() connects again)."""
        await self._shutdown("closed")

    async def _shutdown(self, reason: str) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        await _close_quietly(conn)
        self._connection_lost(reason, conn_was_active=False)

    # --- sending -----------------------------------------------------------------------------------------

    async def _send_loop(self, conn: AsyncRealtimeConnection) -> None:
        while True:
            op = await self._outbox.get()
            try:
                await op(conn)
            except Exception as e:  # the reader sees the closed socket and reports it
                log.debug("send failed (%s); the receive side reports the lost connection", e)
                return

    def append(self, pcm16k: bytes) -> None:
        """16 kHz PCM16 mic audio → 24 kHz `input_audio_buffer.append` (queued until the session is ready)."""
        self._queue_audio(self._resampler.process(pcm16k))

    def _queue_audio(self, pcm: bytes) -> None:
        if not pcm:
            return
        self._turn_bytes += len(pcm)
        b64 = base64.b64encode(pcm).decode("ascii")
        self._outbox.put_nowait(lambda c: self._send_append(c, b64, len(pcm)))

    async def _send_append(self, conn: AsyncRealtimeConnection, b64: str, nbytes: int) -> None:
        await conn.input_audio_buffer.append(audio=b64)
        if not self._append_traced:
            self._append_traced = True
            self._trace.emit("audio_appended", bytes=nbytes)

    def discard(self) -> None:
        """Nothing was said (or the turn was abandoned): forget the audio of this turn.

        Not connected: the queued audio is dropped unsent. Connected: what is already on its way is cleared
        from the server's input buffer, so it can never slip into the next turn's commit.
        """
        self._resampler = StreamResampler(INPUT_RATE_HZ, RATE_HZ)
        self._turn_bytes = 0
        self._append_traced = False
        if self._conn is None:
            while not self._outbox.empty():
                self._outbox.get_nowait()
            return
        self._outbox.put_nowait(lambda c: c.input_audio_buffer.clear())

    async def commit(self) -> None:
        """End of the user's speech (local endpointing): commit the buffer and ask for the answer."""
        self._queue_audio(self._resampler.process(b"", last=True))
        self._resampler = StreamResampler(INPUT_RATE_HZ, RATE_HZ)
        nbytes, self._turn_bytes = self._turn_bytes, 0
        self._start_turn()
        if nbytes < MIN_COMMIT_MS * BYTES_PER_MS:
            ms = nbytes / BYTES_PER_MS
            log.warning("utterance of %.0f ms is too short to send (the API needs >= %d ms)", ms, MIN_COMMIT_MS)
            self._outbox.put_nowait(lambda c: c.input_audio_buffer.clear())
            self._finish(Failure(FailureReason.ERROR, "input_audio_buffer_commit_empty", f"only {ms:.0f} ms"))
            return
        self._trace.emit("commit", bytes=nbytes, audio_ms=nbytes // BYTES_PER_MS)
        self._outbox.put_nowait(lambda c: c.input_audio_buffer.commit())
        await self._create_response()

    async def ask(self, text: str) -> None:
        """A typed/spoken-elsewhere request as a user text item, then ask for the answer."""
        if not text.strip():
            raise ValueError("ask() needs the request text, got an empty string")
        self._start_turn()
        item: Any = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        self._trace.emit("transcript", role="user", text=text)
        self._outbox.put_nowait(lambda c: c.conversation.item.create(item=item))
        await self._create_response()

    async def _create_response(self) -> None:
        """`response.create`, but never while one is active (no conversation_already_has_active_response)."""
        if not self._no_response.is_set():
            try:
                await asyncio.wait_for(self._no_response.wait(), self._settings.response_timeout)
            except asyncio.TimeoutError:
                log.warning("previous response never finished; requesting the new one anyway")
        self._no_response.clear()
        self._outbox.put_nowait(lambda c: c.response.create())
        self._arm_timeout()

    async def cancel(self, audio_end_ms: int) -> None:
        """Barge-in: stop the answer and cut the model's memory of it at what the user actually heard."""
        if audio_end_ms < 0:
            raise ValueError(f"audio_end_ms must be >= 0 (milliseconds played), got {audio_end_ms}")
        if not self._no_response.is_set():
            self._mark_cancelled()
            self._outbox.put_nowait(lambda c: c.response.cancel())
        item_id, heard = self._audio_item, min(audio_end_ms, self._audio_item_bytes // BYTES_PER_MS)
        if item_id:
            self._audio_item = ""

            async def truncate(c: AsyncRealtimeConnection) -> None:
                await c.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=heard)

            self._outbox.put_nowait(truncate)
        self._end_turn()

    async def events(self) -> AsyncIterator[RealtimeEvent]:
        """Events of the current turn; ends after its final ResponseDone or a Failure."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, Failure) or (isinstance(event, ResponseDone) and not event.follow_up):
                return

    # --- housekeeping ------------------------------------------------------------------------------------

    async def _idle_loop(self, conn: AsyncRealtimeConnection) -> None:
        """Close the session after realtime.session_idle_seconds without a turn (saves cost and sockets)."""
        idle_s = self._settings.session_idle_seconds
        while self._conn is conn:
            if self._turn_active or not self._no_response.is_set():
                self._touch()
            remaining = self._last_activity + idle_s - time.monotonic()
            if remaining <= 0:
                log.info("closing the idle Realtime session after %.0f s without a turn", idle_s)
                await self._shutdown("idle")
                return
            await asyncio.sleep(min(max(remaining, 0.05), 1.0))


async def _close_quietly(conn: AsyncRealtimeConnection) -> None:
    try:
        await asyncio.wait_for(conn.close(), CLOSE_TIMEOUT_S)
    except Exception as e:  # closing a broken socket may fail in many ways; it is gone either way
        log.debug("closing the Realtime socket: %s", e)
