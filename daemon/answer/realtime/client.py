"""The OpenAI Realtime (GA) session: connect, stream the user's audio, receive the answer, cancel, tools.

One `RealtimeClient` per daemon. The cloud responder drives it per turn: `open()` (parallel with listening,
so connection time is never added after the user stops), `append()` frames, `commit()` or `ask()`, iterate
`events()`, `cancel()` on barge-in. All sends go through one ordered outbox: audio buffered before the
session is ready is flushed first, in order, and nothing at all is sent before `open()`. Every failure
arrives as a `Failure` (or `RealtimeFailure` from `open()`) whose reason names a spoken fallback message.

The session's life is one explicit `SessionState` with one writer (`_set`); the server's own rule of one
active response at a time is the `_no_response` gate. Server events arrive as the SDK's typed models and
are dispatched by type in `_on_event`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from enum import Enum
from typing import Any

from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionCompletedEvent,
    InputAudioBufferCommittedEvent,
    InputAudioBufferSpeechStartedEvent,
    RealtimeErrorEvent,
    RealtimeServerEvent,
    ResponseAudioDeltaEvent,
    ResponseAudioTranscriptDeltaEvent,
    ResponseAudioTranscriptDoneEvent,
    ResponseCreatedEvent,
    ResponseDoneEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    SessionUpdatedEvent,
)
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus, WebSocketException

from daemon.answer.budget import DailyCost
from daemon.answer.realtime.protocol import (
    BENIGN_ERRORS,
    BYTES_PER_MS,
    MIN_COMMIT_MS,
    PROBE_METADATA,
    RATE_HZ,
    AudioDelta,
    Failure,
    RealtimeEvent,
    RealtimeFailure,
    ResponseDone,
    ServerSpeechStarted,
    TextDelta,
    ToolCall,
    Transcript,
    probe_response,
    session_payload,
)
from daemon.answer.realtime.usage import Usage, cost_usd
from daemon.answer.reasons import FallbackReason
from daemon.answer.tools import ToolRegistry
from daemon.audio.frames import INPUT_RATE_HZ
from daemon.audio.resample import StreamResampler
from daemon.config.settings import CostSettings, RealtimeSettings
from daemon.observe import events as ev
from daemon.observe.bus import EventBus
from daemon.system import tasks

log = logging.getLogger(__name__)

Send = Callable[[AsyncRealtimeConnection], Awaitable[None]]
CLOSE_TIMEOUT_S = 2.0


class SessionState(str, Enum):
    CLOSED = "closed"
    """No socket; `open()` connects."""
    CONNECTING = "connecting"
    """Handshake and `session.update` in progress; audio appended meanwhile waits in the outbox."""
    READY = "ready"
    """Connected, no request in flight (listening, or between turns)."""
    AWAITING = "awaiting"
    """A request was sent (commit, ask or a server-VAD commit); no answer yet: the response timeout runs."""
    ANSWERING = "answering"
    """The answer is arriving; the timeout now guards against a stall."""

    def __str__(self) -> str:
        return self.value


IN_TURN = (SessionState.AWAITING, SessionState.ANSWERING)


class RealtimeClient:
    """A warm, reusable Realtime session; see the module docstring for the turn protocol."""

    def __init__(
        self,
        settings: RealtimeSettings,
        cost: CostSettings,
        api_key: str,
        tools: ToolRegistry,
        bus: EventBus,
        *,
        spend: DailyCost | None = None,
    ) -> None:
        self._settings = settings
        self._cost = cost
        self._tools = tools
        self._bus = bus
        self.spend = spend if spend is not None else DailyCost()
        self.usage_since_start = Usage()
        self._api_key = api_key.strip()
        self._state = SessionState.CLOSED
        self._conn: AsyncRealtimeConnection | None = None
        self._opening: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._outbox: asyncio.Queue[Send] = asyncio.Queue()
        self._events: asyncio.Queue[RealtimeEvent] = asyncio.Queue()
        self._no_response = asyncio.Event()  # set: the server has no active response (we may create one)
        self._no_response.set()
        self._resampler = StreamResampler(INPUT_RATE_HZ, RATE_HZ)
        self._turn_bytes = 0
        self._turn_t = 0.0
        self._progress_t = 0.0
        self._response_id = ""
        self._cancelled: set[str] = set()
        self._cancel_next_created = False
        self._audio_item = ""
        self._audio_item_bytes = 0
        self._pending_tools: list[tuple[str, str, asyncio.Task[str]]] = []
        self._timeout_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._probes: dict[str, asyncio.Future[str]] = {}  # response id → its final status
        self._probe_waiter: asyncio.Future[str] | None = None  # the probe whose response.created is due
        self._expired = False  # the server said session_expired: the coming close is not an outage
        self._append_traced = False
        self._last_activity = time.monotonic()

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def cost_today_usd(self) -> float:
        return self.spend.spent_today

    def _set(self, state: SessionState) -> None:
        """The one writer of the session state."""
        if state is not self._state:
            log.debug("realtime session %s → %s", self._state, state)
            self._state = state

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and configure (or reuse the warm session). Raises RealtimeFailure with a reason."""
        if self.spend.over(self._cost.daily_limit):
            raise RealtimeFailure(
                FallbackReason.COST_LIMIT,
                f"today's estimated spend ${self.spend.spent_today:.2f} reached cost.daily_limit "
                f"${self._cost.daily_limit:.2f}; the cloud is used again tomorrow",
            )
        if self._conn is not None:
            self._touch()
            return
        if self._opening is None or self._opening.done():
            self._opening = asyncio.create_task(self._connect(), name="realtime-connect")
        await self._opening

    async def _connect(self) -> None:
        if not self._api_key:
            raise RealtimeFailure(
                FallbackReason.NO_API_KEY,
                "OPENAI_API_KEY is not set; put it in /etc/hark/env (or the environment) and restart",
            )
        self._set(SessionState.CONNECTING)
        self._bus.publish(ev.RealtimeConnecting(self._settings.model, self._settings.url or "openai"))
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
            self._set(SessionState.CLOSED)
            raise  # already traced and logged where it was decided
        except asyncio.TimeoutError:
            self._set(SessionState.CLOSED)
            raise self._connect_failed(
                FallbackReason.UNREACHABLE, f"no session.updated within {self._settings.connect_timeout:g} s"
            ) from None
        except (WebSocketException, OSError) as e:
            self._set(SessionState.CLOSED)
            raise self._connect_failed(FallbackReason.UNREACHABLE, f"connection lost during setup: {e}") from e
        except BaseException:
            self._set(SessionState.CLOSED)
            raise
        self._attach(conn)
        setup_ms = round((time.monotonic() - t0) * 1000, 1)
        self._bus.publish(ev.RealtimeConnected(setup_ms))
        log.info("Realtime session ready in %.0f ms (model %s)", setup_ms, self._settings.model)

    def _connect_failed(self, reason: FallbackReason, detail: str, code: str = "") -> RealtimeFailure:
        self._bus.publish(ev.RealtimeError(code or reason.value, detail, reason=reason.value))
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
                FallbackReason.UNREACHABLE,
                f"{where}: no connection within {timeout:g} s (realtime.connect_timeout)",
            ) from None
        except InvalidStatus as e:
            status = e.response.status_code
            body = e.response.body.decode("utf-8", "replace")[:200] if e.response.body else ""
            if status in (401, 403):
                raise self._connect_failed(
                    FallbackReason.AUTH,
                    f"{where} refused the API key (HTTP {status}): {body}; check OPENAI_API_KEY",
                    code=f"http_{status}",
                ) from e
            reason = FallbackReason.UNREACHABLE if status >= 500 or status == 429 else FallbackReason.ERROR
            raise self._connect_failed(reason, f"{where} answered HTTP {status}: {body}", f"http_{status}") from e
        except (OSError, WebSocketException) as e:
            raise self._connect_failed(
                FallbackReason.UNREACHABLE,
                f"cannot connect to {where}: {e} (network down or realtime.url wrong?)",
            ) from e

    async def _await_session(self, conn: AsyncRealtimeConnection) -> None:
        """Wait for `session.updated`; an `error` here means our configuration was refused."""
        while True:
            try:
                event = await conn.recv()
            except ValueError:
                continue
            if isinstance(event, SessionUpdatedEvent):
                return
            if isinstance(event, RealtimeErrorEvent):
                code, message = str(event.error.code or event.error.type), str(event.error.message)
                raise self._connect_failed(
                    FallbackReason.ERROR, f"session.update refused: {code}: {message}", code=code
                )

    def _attach(self, conn: AsyncRealtimeConnection) -> None:
        self._conn = conn
        self._expired = False
        self._set(SessionState.READY)
        self._touch()
        self._tasks = [
            tasks.spawn(self._read_loop(conn), "realtime-read"),
            tasks.spawn(self._send_loop(conn), "realtime-send"),
            tasks.spawn(self._idle_loop(conn), "realtime-idle"),
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

    # --- the cloud's health, for the circuit breaker ------------------------------------------------------

    async def probe(self, timeout_s: float) -> None:
        """Is the cloud answering? Opens (or reuses) the session and asks for a one-word text answer outside
        the conversation. Only a completed response counts: a socket that accepts the connection but never
        answers must not close the breaker. Raises RealtimeFailure (timeout, error) or TimeoutError."""
        await asyncio.wait_for(self.open(), timeout_s)
        if self._probe_waiter is not None:
            raise RealtimeFailure(FallbackReason.ERROR, "a probe is already running")
        loop = asyncio.get_running_loop()
        self._probe_waiter = created = loop.create_future()
        body: Any = probe_response()
        self._outbox.put_nowait(lambda c: c.response.create(response=body))
        try:
            status = await asyncio.wait_for(created, timeout_s)
        except asyncio.TimeoutError:
            raise RealtimeFailure(FallbackReason.TIMEOUT, f"no answer to the probe within {timeout_s:g} s") from None
        finally:
            self._probe_waiter = None
        if status != "completed":
            raise RealtimeFailure(FallbackReason.ERROR, f"the probe's response ended {status}")

    # --- sending -----------------------------------------------------------------------------------------

    async def _send_loop(self, conn: AsyncRealtimeConnection) -> None:
        while True:
            op = await self._outbox.get()
            try:
                await op(conn)
            except (ConnectionClosed, WebSocketException, OSError) as e:
                # the socket is gone: the read loop sees it too and reports the lost connection
                log.info("Realtime send failed (%s: %s); the connection is being reported lost", type(e).__name__, e)
                return
            except Exception:
                log.exception("Realtime send failed on a message we built: a bug; the session is closed")
                self._spawn(self._shutdown("dropped"), "realtime-shutdown")
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
            self._bus.publish(ev.AudioAppended(nbytes))

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
            self._finish(Failure(FallbackReason.ERROR, "input_audio_buffer_commit_empty", f"only {ms:.0f} ms"))
            return
        self._bus.publish(ev.Committed(bytes=nbytes, audio_ms=nbytes // BYTES_PER_MS))
        self._outbox.put_nowait(lambda c: c.input_audio_buffer.commit())
        await self._create_response()

    async def ask(self, text: str) -> None:
        """A typed/spoken-elsewhere request as a user text item, then ask for the answer."""
        if not text.strip():
            raise ValueError("ask() needs the request text, got an empty string")
        self._start_turn()
        item: Any = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
        self._bus.publish(ev.Transcript("user", text))
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

    # --- the turn ------------------------------------------------------------------------------------------

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    def _start_turn(self, drain: bool = True) -> None:
        while drain and not self._events.empty():  # leftovers of an abandoned turn must not end this one
            self._events.get_nowait()
        if not self._no_response.is_set():
            self._mark_cancelled()
        self._set(SessionState.AWAITING)
        self._turn_t = time.monotonic()
        self._append_traced = False
        self._touch()

    def _end_turn(self) -> None:
        if self._state in IN_TURN:
            self._set(SessionState.READY if self._conn is not None else SessionState.CLOSED)
        self._disarm_timeout()
        self._touch()

    def _finish(self, event: Failure | ResponseDone) -> None:
        """Queue the event that ends the turn."""
        self._events.put_nowait(event)
        self._end_turn()

    def _mark_cancelled(self) -> None:
        if self._response_id:
            self._cancelled.add(self._response_id)
        else:
            self._cancel_next_created = True

    def _arm_timeout(self) -> None:
        self._disarm_timeout()
        self._progress_t = time.monotonic()
        self._timeout_task = tasks.spawn(self._timeout(), "realtime-timeout")

    def _disarm_timeout(self) -> None:
        if self._timeout_task is not None and self._timeout_task is not asyncio.current_task():
            self._timeout_task.cancel()
        self._timeout_task = None

    async def _timeout(self) -> None:
        """Fail the turn when the answer does not start, or stops, for realtime.response_timeout."""
        limit = self._settings.response_timeout
        while True:
            waited = time.monotonic() - self._progress_t
            if waited >= limit:
                break
            await asyncio.sleep(limit - waited)
        if self._state not in IN_TURN:
            return
        what = "no answer audio" if self._state is SessionState.AWAITING else "the answer stalled"
        detail = f"{what} for {limit:g} s (realtime.response_timeout)"
        log.warning("%s; cancelling it and falling back", detail)
        self._bus.publish(ev.RealtimeError("response_timeout", detail, reason=FallbackReason.TIMEOUT.value))
        if not self._no_response.is_set():
            self._mark_cancelled()
            self._outbox.put_nowait(lambda c: c.response.cancel())
        self._timeout_task = None
        self._finish(Failure(FallbackReason.TIMEOUT, "response_timeout", detail))

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """A supervised background task of this session (cancelled when the connection is lost)."""
        task = tasks.spawn(coro, name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- receiving ---------------------------------------------------------------------------------------

    async def _read_loop(self, conn: AsyncRealtimeConnection) -> None:
        reason = "dropped"
        try:
            while True:
                try:
                    event = await conn.recv()
                except ValueError as e:
                    log.warning("ignored a server message that is not valid JSON: %s", e)
                    continue
                try:
                    self._on_event(event)
                except (AttributeError, TypeError, ValueError, binascii.Error) as e:
                    log.warning("ignored a malformed %r event: %s", getattr(event, "type", "?"), e)
        except ConnectionClosed as e:
            reason = (
                "expired" if self._expired else ("server_closed" if isinstance(e, ConnectionClosedOK) else "dropped")
            )
            log.log(logging.INFO if self._expired else logging.WARNING, "Realtime socket closed (%s): %s", reason, e)
        except Exception as e:  # e.g. WebSocketConnectionClosedError, OSError: the socket is unusable
            log.warning("Realtime socket failed: %s: %s", type(e).__name__, e)
        finally:
            if self._conn is conn:
                self._conn = None
                self._connection_lost(reason, conn_was_active=True)

    def _connection_lost(self, reason: str, conn_was_active: bool) -> None:
        """The session is gone: fail the turn in flight, drop stale sends, reset response state."""
        for bg in list(self._background):
            if bg is not asyncio.current_task():
                bg.cancel()
        for _, _, tool_task in self._pending_tools:
            tool_task.cancel()
        self._pending_tools = []
        for future in [*self._probes.values(), self._probe_waiter]:
            if future is not None and not future.done():
                future.set_result(f"connection {reason}")
        self._probes.clear()
        while not self._outbox.empty():
            self._outbox.get_nowait()
        if conn_was_active and (self._state in IN_TURN or not self._no_response.is_set()):
            fr = FallbackReason.EXPIRED if reason == "expired" else FallbackReason.DROPPED
            detail = f"the Realtime connection ended mid-turn ({reason})"
            if fr is FallbackReason.DROPPED:  # an expiry was already reported when the server announced it
                self._bus.publish(ev.RealtimeError(reason, detail, reason=fr.value))
            self._finish(Failure(fr, reason, detail))
        self._end_turn()
        self._set(SessionState.CLOSED)
        self._no_response.set()
        self._response_id = ""
        self._cancel_next_created = False
        self._bus.publish(ev.RealtimeClosed(reason))

    def _on_event(self, event: RealtimeServerEvent) -> None:
        """One typed server event → turn state and `RealtimeEvent`s (anything else is ignored)."""
        match event:
            case ResponseCreatedEvent():
                self._on_response_created(event)
            case ResponseAudioDeltaEvent():
                self._on_audio_delta(event)
            case ResponseTextDeltaEvent():
                if self._live(event.response_id):
                    self._first()
                    self._events.put_nowait(TextDelta(str(event.delta)))
            case ResponseAudioTranscriptDeltaEvent():
                if self._live(event.response_id):
                    self._events.put_nowait(Transcript("assistant", str(event.delta), final=False))
            case ResponseAudioTranscriptDoneEvent():
                self._on_assistant_final(event.response_id, str(event.transcript or ""))
            case ResponseTextDoneEvent():
                self._on_assistant_final(event.response_id, str(event.text or ""))
            case ConversationItemInputAudioTranscriptionCompletedEvent():
                text = str(event.transcript)
                self._events.put_nowait(Transcript("user", text, final=True))
                self._bus.publish(ev.Transcript("user", text))
            case InputAudioBufferSpeechStartedEvent():
                self._events.put_nowait(ServerSpeechStarted(int(event.audio_start_ms)))
            case InputAudioBufferCommittedEvent():
                if self._settings.turn_detection != "local":
                    self._bus.publish(ev.Committed(by="server"))
                    self._start_turn(drain=False)
                    self._arm_timeout()
            case ResponseFunctionCallArgumentsDoneEvent():
                self._on_tool_call(event)
            case ResponseDoneEvent():
                self._on_response_done(event)
            case RealtimeErrorEvent():
                self._on_error(event)
            case _:
                log.debug("ignored server event %r", getattr(event, "type", None))

    def _on_response_created(self, event: ResponseCreatedEvent) -> None:
        rid = str(event.response.id)
        if event.response.metadata == PROBE_METADATA and self._probe_waiter is not None:
            self._probes[rid] = self._probe_waiter  # out of band: not part of any turn
            self._probe_waiter = None
            return
        self._response_id = rid
        self._no_response.clear()
        if self._cancel_next_created:
            self._cancel_next_created = False
            self._cancelled.add(rid)
        elif self._state not in IN_TURN:  # server VAD started this response itself
            self._start_turn(drain=False)
            self._arm_timeout()
        self._bus.publish(ev.ResponseCreated(rid))

    def _first(self) -> None:
        self._progress_t = time.monotonic()
        if self._state is SessionState.AWAITING:
            self._set(SessionState.ANSWERING)
            self._bus.publish(ev.FirstDelta(round((time.monotonic() - self._turn_t) * 1000, 1)))

    def _live(self, response_id: str) -> bool:
        return str(response_id) not in self._cancelled and str(response_id) not in self._probes

    def _on_audio_delta(self, event: ResponseAudioDeltaEvent) -> None:
        if not self._live(event.response_id):
            return
        pcm = base64.b64decode(event.delta, validate=True)
        if event.item_id != self._audio_item:
            self._audio_item, self._audio_item_bytes = str(event.item_id), 0
        self._audio_item_bytes += len(pcm)
        self._first()
        self._events.put_nowait(AudioDelta(pcm, self._audio_item))

    def _on_assistant_final(self, response_id: str, text: str) -> None:
        if str(response_id) in self._probes:
            return
        if self._live(response_id):
            self._events.put_nowait(Transcript("assistant", text, final=True))
        self._bus.publish(ev.Transcript("assistant", text))

    def _on_tool_call(self, event: ResponseFunctionCallArgumentsDoneEvent) -> None:
        name, call_id = str(event.name), str(event.call_id)
        task = asyncio.create_task(self._tools.call(name, call_id, str(event.arguments)), name=f"tool-{name}")
        self._pending_tools.append((name, call_id, task))
        self._progress_t = time.monotonic()
        self._touch()

    def _on_response_done(self, event: ResponseDoneEvent) -> None:
        resp = event.response
        rid, status = str(resp.id), str(resp.status)
        usage = Usage.from_api(resp.usage)
        cost = cost_usd(usage, self._cost)
        self.usage_since_start = self.usage_since_start + usage
        self.spend.add(cost)
        self._bus.publish(ev.ResponseDone(status, usage.as_dict(), round(cost, 6)))
        probe = self._probes.pop(rid, None)
        if probe is not None:
            if not probe.done():
                probe.set_result(status)
            return
        if rid == self._response_id:
            self._response_id = ""
        self._no_response.set()
        tools, self._pending_tools = self._pending_tools, []
        if rid in self._cancelled:
            self._cancelled.discard(rid)
            return
        if status == "failed":
            err = resp.status_details.error if resp.status_details is not None else None
            code = str((err.code if err is not None else "") or "response_failed")
            message = str((err.message if err is not None else "") or "the model's response failed")
            log.error("the model's response failed: %s %s", code, message)
            self._finish(Failure(FallbackReason.ERROR, code, message))
            return
        if status == "incomplete":
            reason = resp.status_details.reason if resp.status_details is not None else None
            log.info("answer cut short: %s", reason or "unknown reason")
        follow_up = bool(tools) and status == "completed" and self._state in IN_TURN
        if follow_up:
            self._spawn(self._finish_tools(tools), "realtime-tool-results")
            self._events.put_nowait(ResponseDone(status, usage, cost, follow_up=True))
        else:
            self._finish(ResponseDone(status, usage, cost))

    async def _finish_tools(self, calls: list[tuple[str, str, asyncio.Task[str]]]) -> None:
        """Tool results go back as items, then exactly one response.create for all of them."""
        for name, call_id, task in calls:
            output = await task
            self._events.put_nowait(ToolCall(name, call_id, output))
            self._outbox.put_nowait(_send_item({"type": "function_call_output", "call_id": call_id, "output": output}))
        await self._create_response()

    def _on_error(self, event: RealtimeErrorEvent) -> None:
        err = event.error
        code = str(err.code or err.type or "unknown")
        message, param = str(err.message or ""), err.param
        detail = message or f"the Realtime API reported {code}"
        if code == "session_expired":
            self._expired = True
            self._bus.publish(ev.RealtimeError(code, detail, reason=FallbackReason.EXPIRED.value))
            log.info("the Realtime session reached its time limit; the next turn reconnects")
            if self._state in IN_TURN:
                self._finish(Failure(FallbackReason.EXPIRED, code, detail))
            return
        if code in BENIGN_ERRORS:
            self._bus.publish(ev.RealtimeError(code, f"{detail} ({BENIGN_ERRORS[code]}; ignored)"))
            log.info("Realtime API: %s (%s); ignored", code, BENIGN_ERRORS[code])
            return
        self._bus.publish(ev.RealtimeError(code, detail + (f" (parameter {param})" if param else "")))
        log.error("Realtime API error %s: %s%s", code, detail, f" (parameter {param})" if param else "")
        if self._state in IN_TURN:
            self._finish(Failure(FallbackReason.ERROR, code, detail))

    # --- housekeeping ------------------------------------------------------------------------------------

    async def _idle_loop(self, conn: AsyncRealtimeConnection) -> None:
        """Close the session after realtime.session_idle_seconds without a turn (saves cost and sockets)."""
        idle_s = self._settings.session_idle_seconds
        while self._conn is conn:
            if self._state in IN_TURN or not self._no_response.is_set():
                self._touch()
            remaining = self._last_activity + idle_s - time.monotonic()
            if remaining <= 0:
                log.info("closing the idle Realtime session after %.0f s without a turn", idle_s)
                await self._shutdown("idle")
                return
            await asyncio.sleep(min(max(remaining, 0.05), 1.0))


def _send_item(item: Any) -> Send:
    async def send(conn: AsyncRealtimeConnection) -> None:
        await conn.conversation.item.create(item=item)

    return send


async def _close_quietly(conn: AsyncRealtimeConnection) -> None:
    try:
        await asyncio.wait_for(conn.close(), CLOSE_TIMEOUT_S)
    except Exception as e:  # closing a broken socket may fail in many ways; it is gone either way
        log.debug("closing the Realtime socket: %s", e)
