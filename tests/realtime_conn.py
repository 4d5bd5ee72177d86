"""One websocket of the test Realtime server: session config, input buffer, server VAD, active response."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import numpy as np
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tests import realtime_protocol as proto
from tests.realtime_response import BYTES_PER_MS, ResponseStream

if TYPE_CHECKING:
    from tests.realtime_server import RealtimeTestServer

RATE_HZ = 24_000


def default_session(model: str) -> dict[str, Any]:
    """What `session.created` reports: the API's defaults (server VAD on, audio out)."""
    fmt = {"type": "audio/pcm", "rate": RATE_HZ}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": "sess_test",
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "audio": {
            "input": {
                "format": fmt,
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "create_response": True,
                    "interrupt_response": True,
                    "silence_duration_ms": 500,
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                },
            },
            "output": {"format": fmt, "voice": "alloy", "speed": 1.0},
        },
    }


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Session:
    """One websocket: session state, the input buffer, the active response, server VAD."""

    def __init__(self, server: RealtimeTestServer, ws: ServerConnection, model: str) -> None:
        self.server = server
        self.ws = ws
        self.config = default_session(model)
        self.buffer = bytearray()
        self.stream: ResponseStream | None = None
        self.out_of_band: set[ResponseStream] = set()
        self.item_audio: dict[str, int] = {}
        self.call_ids: set[str] = set()
        self.vad = Vad()
        self.expired = False
        self.context = {"text": 0, "audio": 0, "cached_text": 0, "cached_audio": 0}
        """Conversation tokens so far (for realistic usage; the earlier context counts as cached)."""

    async def send(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", self.server.new_id("event"))
        await self.ws.send(json.dumps(event))

    async def send_raw(self, text: str) -> None:
        await self.ws.send(text)

    async def run(self) -> None:
        await self.send({"type": "session.created", "session": self.config})
        timer = None
        if self.server.faults.expire_after_s is not None:
            timer = asyncio.get_running_loop().call_later(
                self.server.faults.expire_after_s, lambda: asyncio.ensure_future(self.expire())
            )
        try:
            async for raw in self.ws:
                await self.on_message(raw)
        except ConnectionClosed:
            pass
        finally:
            if timer is not None:
                timer.cancel()
            for stream in [self.stream, *self.out_of_band]:
                if stream is not None:
                    stream.cancel("client_cancelled")

    async def expire(self) -> None:
        if self.expired:
            return
        self.expired = True
        await self.error(
            proto.ProtocolError("session_expired", "Your session hit the maximum duration of 60 minutes."),
            None,
        )
        await self.ws.close(1001, "session expired")

    async def error(self, err: proto.ProtocolError, event_id: str | None) -> None:
        body = {
            "type": "invalid_request_error",
            "code": err.code,
            "message": err.message,
            "param": err.param,
            "event_id": event_id,
        }
        self.server.record.errors.append(body)
        await self.send({"type": "error", "error": body})

    async def on_message(self, raw: str | bytes) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            await self.error(proto.ProtocolError("invalid_json", "The server could not parse the event."), None)
            return
        etype = event.get("type") if isinstance(event, dict) else None
        self.server.record.event_types.append(str(etype))
        try:
            proto.check_event(event)
            await self.dispatch(event)
        except proto.ProtocolError as err:
            await self.error(err, event.get("event_id") if isinstance(event, dict) else None)

    async def dispatch(self, event: dict[str, Any]) -> None:
        handler = {
            "session.update": self.on_session_update,
            "input_audio_buffer.append": self.on_append,
            "input_audio_buffer.commit": self.on_commit,
            "input_audio_buffer.clear": self.on_clear,
            "response.create": self.on_response_create,
            "response.cancel": self.on_response_cancel,
            "conversation.item.create": self.on_item_create,
            "conversation.item.truncate": self.on_truncate,
        }.get(event["type"])
        if handler is None:
            raise proto.ProtocolError("unsupported_event", f"{event['type']} is not supported by the test server.")
        await handler(event)

    async def on_session_update(self, event: dict[str, Any]) -> None:
        proto.check_session(event.get("session"))
        self.config = merge(self.config, event["session"])
        self.server.record.sessions.append(self.config)
        await self.send({"type": "session.updated", "session": self.config})

    def turn_detection(self) -> dict[str, Any] | None:
        td: dict[str, Any] | None = self.config["audio"]["input"].get("turn_detection")
        return td

    async def on_append(self, event: dict[str, Any]) -> None:
        pcm = proto.decode_audio(event)
        self.server.record.audio += pcm
        self.buffer += pcm
        td = self.turn_detection()
        if td is None:
            return
        for change in self.vad.feed(pcm, int(td.get("silence_duration_ms") or 500)):
            await self.on_vad(change, td)

    async def on_vad(self, change: str, td: dict[str, Any]) -> None:
        item_id = self.server.new_id("item")
        if change == "started":
            await self.send(
                {
                    "type": "input_audio_buffer.speech_started",
                    "item_id": item_id,
                    "audio_start_ms": self.vad.start_ms,
                }
            )
            if self.stream is not None and td.get("interrupt_response", True):
                self.stream.cancel("turn_detected")
            return
        await self.send(
            {"type": "input_audio_buffer.speech_stopped", "item_id": item_id, "audio_end_ms": self.vad.end_ms}
        )
        await self.commit(item_id)
        if td.get("create_response", True) and self.stream is None:
            await self.start_response()

    async def on_commit(self, event: dict[str, Any]) -> None:
        if len(self.buffer) < proto.MIN_COMMIT_BYTES:
            raise proto.commit_empty(len(self.buffer))
        await self.commit(self.server.new_id("item"))

    async def commit(self, item_id: str) -> None:
        self.server.record.commits.append(len(self.buffer))
        # ~10 tokens per second of user audio
        self.context["audio"] += len(self.buffer) // BYTES_PER_MS // 100
        self.buffer.clear()
        await self.send({"type": "input_audio_buffer.committed", "item_id": item_id, "previous_item_id": None})
        if self.config["audio"]["input"].get("transcription"):
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item_id,
                    "content_index": 0,
                    "transcript": self.server.user_transcript,
                    "usage": {"type": "duration", "seconds": 1.0},
                }
            )

    async def on_clear(self, event: dict[str, Any]) -> None:
        self.buffer.clear()
        await self.send({"type": "input_audio_buffer.cleared"})

    async def on_response_create(self, event: dict[str, Any]) -> None:
        params = proto.check_response(event.get("response"))
        if params.get("conversation") == "none":
            await self.start_out_of_band(params)
            return
        if self.stream is not None:
            raise proto.ProtocolError(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.stream.response_id}. "
                "Wait until the response is finished before creating a new response.",
            )
        await self.start_response()

    async def start_response(self) -> None:
        self.stream = ResponseStream(self, self.server.next_reply())
        self.stream.start()

    async def start_out_of_band(self, params: dict[str, Any]) -> None:
        """A response outside the conversation (e.g. a health probe): a short text answer that neither reads
        nor changes the conversation, nor takes a scripted reply; the stall faults still apply to it."""
        from tests.realtime_server import Reply  # the server module imports this one

        self.server.record.out_of_band.append(params)
        stream = ResponseStream(self, Reply(transcript="OK", audio=b""), params=params)
        self.out_of_band.add(stream)
        stream.start()

    def response_finished(self, stream: ResponseStream, summary: dict[str, Any]) -> None:
        self.out_of_band.discard(stream)
        if self.stream is stream:
            self.stream = None
        self.server.record.responses.append(summary)

    async def on_response_cancel(self, event: dict[str, Any]) -> None:
        if self.stream is None:
            raise proto.ProtocolError("response_cancel_not_active", "Cancellation failed: no active response found.")
        self.stream.cancel("client_cancelled")

    async def on_item_create(self, event: dict[str, Any]) -> None:
        item = proto.check_item(event.get("item"))
        if item["type"] == "function_call_output" and item["call_id"] not in self.call_ids:
            raise proto.ProtocolError(
                "invalid_value", f"No function call with call_id {item['call_id']!r}.", "item.call_id"
            )
        self.server.record.items.append(item)
        self.context["text"] += len(json.dumps(item)) // 4
        item_id = item.get("id") or self.server.new_id("item")
        await self.send(
            {
                "type": "conversation.item.added",
                "previous_item_id": None,
                "item": {**item, "id": item_id, "object": "realtime.item", "status": "completed"},
            }
        )

    async def on_truncate(self, event: dict[str, Any]) -> None:
        item_id, end_ms = event.get("item_id"), event.get("audio_end_ms")
        if item_id not in self.item_audio:
            raise proto.ProtocolError(
                "item_truncate_invalid_item_id", f"Item with item_id '{item_id}' not found.", "item_id"
            )
        if event.get("content_index") != 0:
            raise proto.invalid("content_index", event.get("content_index"), "0")
        if not isinstance(end_ms, int) or end_ms < 0 or end_ms > self.item_audio[item_id] // BYTES_PER_MS:
            raise proto.ProtocolError(
                "invalid_value",
                f"Audio content of {self.item_audio[item_id] // BYTES_PER_MS}ms is shorter than {end_ms}ms.",
                "audio_end_ms",
            )
        self.server.record.truncates.append(dict(event))
        await self.send(
            {
                "type": "conversation.item.truncated",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": end_ms,
            }
        )


class Vad:
    """Energy VAD over 20 ms windows: enough to emulate server_vad on test tones and silence."""

    WINDOW = 960

    def __init__(self) -> None:
        self.pos_ms = 0
        self.speaking = False
        self.silence_ms = 0
        self.start_ms = 0
        self.end_ms = 0
        self._carry = b""

    def feed(self, pcm: bytes, silence_duration_ms: int) -> list[str]:
        data = self._carry + pcm
        changes = []
        usable = len(data) - len(data) % self.WINDOW
        for off in range(0, usable, self.WINDOW):
            win = np.frombuffer(data[off : off + self.WINDOW], "<i2").astype(np.float64)
            loud = float(np.sqrt(np.mean(win * win))) > 500.0
            self.pos_ms += 20
            if loud and not self.speaking:
                self.speaking, self.start_ms = True, self.pos_ms - 20
                changes.append("started")
            self.silence_ms = 0 if loud else self.silence_ms + 20
            if self.speaking and self.silence_ms >= silence_duration_ms:
                self.speaking, self.end_ms = False, self.pos_ms - self.silence_ms
                changes.append("stopped")
        self._carry = data[usable:]
        return changes
