"""The receive side of the Realtime session: server events → `RealtimeEvent`s, turn state, tools, usage.

Why a separate class: the read loop owns the per-turn state (active response, cancelled responses, the
audio item being played, the first-audio timeout), and keeping it apart from the send side keeps each
file small. `RealtimeClient` (daemon/realtime.py) inherits it and adds connecting and sending.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from openai.resources.realtime.realtime import AsyncRealtimeConnection
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from daemon.answer.fallback import DailyCost
from daemon.answer.realtime.protocol import (
    BENIGN_ERRORS,
    AudioDelta,
    Failure,
    FailureReason,
    RealtimeEvent,
    ResponseDone,
    ServerSpeechStarted,
    TextDelta,
    ToolCall,
    Transcript,
)
from daemon.answer.realtime.usage import DailyTotal, Usage, cost_usd
from daemon.answer.tools import ToolRegistry
from daemon.config.settings import CostSettings, RealtimeSettings
from daemon.observe.trace import Trace

log = logging.getLogger(__name__)

Send = Callable[[AsyncRealtimeConnection], Awaitable[Any]]


class Receiver:
    """Turn state and server-event translation; see RealtimeClient for the public interface."""

    def __init__(self, settings: RealtimeSettings, cost: CostSettings, tools: ToolRegistry, trace: Trace) -> None:
        self._settings = settings
        self._cost = cost
        self._tools = tools
        self._trace = trace
        self._conn: AsyncRealtimeConnection | None = None
        self._outbox: asyncio.Queue[Send] = asyncio.Queue()
        self._events: asyncio.Queue[RealtimeEvent] = asyncio.Queue()
        self._no_response = asyncio.Event()
        self._no_response.set()
        self._turn_active = False
        self._awaiting_first = False
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
        self._expired = False
        self._append_traced = False
        self._last_activity = time.monotonic()
        self.daily = DailyTotal()
        self.spend: DailyCost | None = None
        """Today's spend kept across restarts (daemon); None = counted in memory only (`daily`)."""

    @property
    def connected(self) -> bool:
        return self._conn is not None

    @property
    def usage_today(self) -> Usage:
        return self.daily.usage

    @property
    def cost_today_usd(self) -> float:
        return self.daily.cost_usd

    async def _create_response(self) -> None:
        raise NotImplementedError

    # --- turn state --------------------------------------------------------------------------------------

    def _touch(self) -> None:
        self._last_activity = time.monotonic()

    def _start_turn(self, drain: bool = True) -> None:
        while drain and not self._events.empty():  # leftovers of an abandoned turn must not end this one
            self._events.get_nowait()
        if not self._no_response.is_set():
            self._mark_cancelled()
        self._turn_active = True
        self._awaiting_first = True
        self._turn_t = time.monotonic()
        self._append_traced = False
        self._touch()

    def _end_turn(self) -> None:
        self._turn_active = False
        self._awaiting_first = False
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
        self._timeout_task = asyncio.create_task(self._timeout(), name="realtime-timeout")

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
        if not self._turn_active:
            return
        what = "no answer audio" if self._awaiting_first else "the answer stalled"
        log.warning("%s for %.1f s (realtime.response_timeout); cancelling it and falling back", what, limit)
        self._trace.emit("realtime_error", code="response_timeout")
        if not self._no_response.is_set():
            self._mark_cancelled()
            self._outbox.put_nowait(lambda c: c.response.cancel())
        self._timeout_task = None
        self._finish(Failure(FailureReason.TIMEOUT, "response_timeout", f"{what} for {limit:g} s"))

    # --- receiving ---------------------------------------------------------------------------------------

    async def _read_loop(self, conn: AsyncRealtimeConnection) -> None:
        reason = "dropped"
        try:
            while True:
                try:
                    event: Any = await conn.recv()
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
            log.log(
                logging.INFO if self._expired else logging.WARNING,
                "Realtime socket closed (%s): %s",
                reason,
                e,
            )
        except Exception as e:  # e.g. WebSocketConnectionClosedError, OSError: the socket is unusable
            log.warning("Realtime socket failed: %s: %s", type(e).__name__, e)
        finally:
            if self._conn is conn:
                self._conn = None
                self._connection_lost(reason, conn_was_active=True)

    def _connection_lost(self, reason: str, conn_was_active: bool) -> None:
        """The session is gone: fail the turn in flight, drop stale sends, reset response state."""
        for bg in list(self._background):
            bg.cancel()
        for _, _, tool_task in self._pending_tools:
            tool_task.cancel()
        self._pending_tools = []
        while not self._outbox.empty():
            self._outbox.get_nowait()
        if conn_was_active and (self._turn_active or not self._no_response.is_set()):
            fr = FailureReason.EXPIRED if reason == "expired" else FailureReason.DROPPED
            self._finish(Failure(fr, reason, f"the Realtime connection ended mid-turn ({reason})"))
        self._end_turn()
        self._no_response.set()
        self._response_id = ""
        self._cancel_next_created = False
        self._trace.emit("realtime_closed", reason=reason)

    def _on_event(self, event: Any) -> None:
        kind = getattr(event, "type", None)
        handler = self._HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            log.debug("ignored server event %r", kind)
            return
        handler(self, event)

    def _on_response_created(self, event: Any) -> None:
        self._response_id = str(event.response.id)
        self._no_response.clear()
        if self._cancel_next_created:
            self._cancel_next_created = False
            self._cancelled.add(self._response_id)
        elif not self._turn_active:  # server VAD started this response itself
            self._start_turn(drain=False)
            self._arm_timeout()
        self._trace.emit("response_created", response_id=self._response_id)

    def _first(self) -> None:
        self._progress_t = time.monotonic()
        if self._awaiting_first:
            self._awaiting_first = False
            self._trace.emit("first_delta", ms=round((time.monotonic() - self._turn_t) * 1000, 1))

    def _live(self, event: Any) -> bool:
        return str(event.response_id) not in self._cancelled

    def _on_audio_delta(self, event: Any) -> None:
        if not self._live(event):
            return
        pcm = base64.b64decode(event.delta, validate=True)
        if event.item_id != self._audio_item:
            self._audio_item, self._audio_item_bytes = str(event.item_id), 0
        self._audio_item_bytes += len(pcm)
        self._first()
        self._events.put_nowait(AudioDelta(pcm, self._audio_item))

    def _on_text_delta(self, event: Any) -> None:
        if self._live(event):
            self._first()
            self._events.put_nowait(TextDelta(str(event.delta)))

    def _on_transcript_delta(self, event: Any) -> None:
        if self._live(event):
            self._events.put_nowait(Transcript("assistant", str(event.delta), final=False))

    def _on_assistant_final(self, event: Any) -> None:
        text = str(getattr(event, "transcript", None) or getattr(event, "text", None) or "")
        if self._live(event):
            self._events.put_nowait(Transcript("assistant", text, final=True))
        self._trace.emit("transcript", role="assistant", text=text)

    def _on_user_transcript(self, event: Any) -> None:
        text = str(event.transcript)
        self._events.put_nowait(Transcript("user", text, final=True))
        self._trace.emit("transcript", role="user", text=text)

    def _on_speech_started(self, event: Any) -> None:
        self._events.put_nowait(ServerSpeechStarted(int(event.audio_start_ms)))

    def _on_committed(self, event: Any) -> None:
        if self._settings.turn_detection != "local":
            self._trace.emit("commit", by="server")
            self._start_turn(drain=False)
            self._arm_timeout()

    def _on_tool_call(self, event: Any) -> None:
        name, call_id = str(event.name), str(event.call_id)
        task = asyncio.create_task(self._tools.call(name, call_id, str(event.arguments)))
        self._pending_tools.append((name, call_id, task))
        self._progress_t = time.monotonic()
        self._touch()

    def _on_response_done(self, event: Any) -> None:
        resp = event.response
        rid, status = str(resp.id), str(resp.status)
        usage = Usage.from_api(resp.usage)
        cost = cost_usd(usage, self._cost)
        self.daily.add(usage, cost)
        if self.spend is not None:
            self.spend.add(cost)
        self._trace.emit("response_done", status=status, usage=usage.as_dict(), cost_usd=round(cost, 6))
        if rid == self._response_id:
            self._response_id = ""
        self._no_response.set()
        tools, self._pending_tools = self._pending_tools, []
        if rid in self._cancelled:
            self._cancelled.discard(rid)
            return
        if status == "failed":
            err = getattr(resp.status_details, "error", None)
            code, message = (
                str(getattr(err, "code", "") or "response_failed"),
                str(getattr(err, "message", "")),
            )
            log.error("the model's response failed: %s %s", code, message)
            self._finish(Failure(FailureReason.ERROR, code, message))
            return
        if status == "incomplete":
            log.info("answer cut short: %s", getattr(resp.status_details, "reason", "unknown reason"))
        follow_up = bool(tools) and status == "completed" and self._turn_active
        if follow_up:
            task = asyncio.create_task(self._finish_tools(tools))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
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

    def _on_error(self, event: Any) -> None:
        err = event.error
        code = str(err.code or err.type or "unknown")
        message, param = str(err.message), getattr(err, "param", None)
        self._trace.emit("realtime_error", code=code)
        if code == "session_expired":
            self._expired = True
            log.info("the Realtime session reached its time limit; the next turn reconnects")
            if self._turn_active:
                self._finish(Failure(FailureReason.EXPIRED, code, message))
            return
        if code in BENIGN_ERRORS:
            log.info("Realtime API: %s (%s); ignored", code, BENIGN_ERRORS[code])
            return
        log.error("Realtime API error %s: %s%s", code, message, f" (parameter {param})" if param else "")
        if self._turn_active:
            self._finish(Failure(FailureReason.ERROR, code, message))

    _HANDLERS: dict[str, Callable[[Receiver, Any], None]] = {
        "response.created": _on_response_created,
        "response.output_audio.delta": _on_audio_delta,
        "response.output_text.delta": _on_text_delta,
        "response.output_audio_transcript.delta": _on_transcript_delta,
        "response.output_audio_transcript.done": _on_assistant_final,
        "response.output_text.done": _on_assistant_final,
        "conversation.item.input_audio_transcription.completed": _on_user_transcript,
        "input_audio_buffer.speech_started": _on_speech_started,
        "input_audio_buffer.committed": _on_committed,
        "response.function_call_arguments.done": _on_tool_call,
        "response.done": _on_response_done,
        "error": _on_error,
    }


def _send_item(item: Any) -> Send:
    async def send(conn: AsyncRealtimeConnection) -> None:
        await conn.conversation.item.create(item=item)

    return send
