"""One scripted response of the test Realtime server: the GA event sequence, paced, cancellable, faultable."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.realtime_conn import Session
    from tests.realtime_server import Reply

BYTES_PER_MS = 48


class Dropped(Exception):
    """The drop fault fired: the transport is gone, nothing more can be sent."""


class ResponseStream:
    """Streams `reply` on `session` as response.* events; `cancel()` ends it with status cancelled."""

    def __init__(self, session: Session, reply: Reply, params: dict[str, Any] | None = None) -> None:
        self.session = session
        self.params = params or {}
        """`response.create`'s own parameters (override the session's for this response)."""
        self.server = session.server
        self.reply = reply
        self.response_id = self.server.new_id("resp")
        self.cancel_reason = ""
        self._cancelled = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent_ms = 0
        self.output: list[dict[str, Any]] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def cancel(self, reason: str) -> None:
        if not self._cancelled.is_set():
            self.cancel_reason = reason
            self._cancelled.set()

    async def _sleep(self, seconds: float) -> bool:
        """Wait, but wake at once on cancel; True = cancelled."""
        if seconds <= 0:
            return self._cancelled.is_set()
        try:
            await asyncio.wait_for(self._cancelled.wait(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    def _base(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "response_id": self.response_id, "output_index": 0, **fields}

    async def _run(self) -> None:
        status = "failed"
        try:
            await self.session.send({"type": "response.created", "response": self._response("in_progress")})
            if self.server.faults.garbage:
                await self._garbage()
            status = await self._produce()
            await self.session.send({"type": "response.done", "response": self._response(status)})
        except (Dropped, ConnectionError, Exception) as e:  # noqa: BLE001 - the socket is gone; just record
            status = f"aborted: {type(e).__name__}"
        finally:
            self.session.response_finished(
                self, {"id": self.response_id, "status": status, "kinds": [o["type"] for o in self.output]}
            )

    async def _produce(self) -> str:
        if self.reply.function_call is not None:
            return await self._function_call(*self.reply.function_call)
        if await self._sleep(self.server.first_delta_delay_ms / 1000):
            return "cancelled"
        if self.server.faults.stall == "first":
            await self._cancelled.wait()
            return "cancelled"
        if self._modalities() == ["text"]:
            return await self._text()
        return await self._audio()

    def _new_message_item(self) -> tuple[str, dict[str, Any]]:
        """An assistant message item, in progress, added to this response's output."""
        item_id = self.server.new_id("item")
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        self.output.append(item)
        return item_id, item

    async def _audio(self) -> str:
        item_id, item = self._new_message_item()
        self.session.item_audio[item_id] = 0
        await self.session.send(self._base("response.output_item.added", item=item))
        await self.session.send(
            self._base(
                "response.content_part.added",
                item_id=item_id,
                content_index=0,
                part={"type": "audio", "transcript": ""},
            )
        )
        audio, words = self.reply.audio, self.reply.transcript.split()
        step = max(1, self.server.chunk_ms) * BYTES_PER_MS
        chunks = max(1, -(-len(audio) // step))
        said = 0
        for i, off in enumerate(range(0, len(audio), step)):
            if await self._faults_at(self.sent_ms):
                item["status"] = "incomplete"
                return "cancelled"
            piece = audio[off : off + step]
            await self.session.send(
                self._base(
                    "response.output_audio.delta",
                    item_id=item_id,
                    content_index=0,
                    delta=base64.b64encode(piece).decode(),
                )
            )
            self.session.item_audio[item_id] += len(piece)
            self.sent_ms += len(piece) // BYTES_PER_MS
            upto = len(words) * (i + 1) // chunks
            if upto > said:
                text = " ".join(words[said:upto]) + ("" if upto == len(words) else " ")
                await self.session.send(
                    self._base("response.output_audio_transcript.delta", item_id=item_id, content_index=0, delta=text)
                )
                said = upto
            pause = len(piece) / BYTES_PER_MS / 1000 if self.server.realtime_pace else 0
            if await self._sleep(pause):
                item["status"] = "incomplete"
                return "cancelled"
        for kind, extra in (
            ("response.output_audio.done", {}),
            ("response.output_audio_transcript.done", {"transcript": self.reply.transcript}),
            ("response.content_part.done", {"part": {"type": "audio", "transcript": self.reply.transcript}}),
        ):
            await self.session.send(self._base(kind, item_id=item_id, content_index=0, **extra))
        item.update(status="completed", content=[{"type": "output_audio", "transcript": self.reply.transcript}])
        await self.session.send(self._base("response.output_item.done", item=item))
        return "completed"

    async def _faults_at(self, sent_ms: int) -> bool:
        """Apply drop/stall faults at this point of the stream; True = cancelled while stalled."""
        faults = self.server.faults
        if faults.drop_after_ms is not None and sent_ms >= faults.drop_after_ms:
            self.session.ws.transport.abort()
            raise Dropped
        if faults.stall == "mid" and sent_ms >= faults.stall_after_ms:
            await self._cancelled.wait()
            return True
        return False

    async def _text(self) -> str:
        item_id, item = self._new_message_item()
        await self.session.send(self._base("response.output_item.added", item=item))
        words = self.reply.transcript.split()
        for i, word in enumerate(words):
            delta = word + (" " if i < len(words) - 1 else "")
            await self.session.send(
                self._base("response.output_text.delta", item_id=item_id, content_index=0, delta=delta)
            )
            pace = self.server.chunk_ms / 1000 if self.server.realtime_pace else 0
            if await self._sleep(pace):
                return "cancelled"
        await self.session.send(
            self._base("response.output_text.done", item_id=item_id, content_index=0, text=self.reply.transcript)
        )
        item.update(status="completed", content=[{"type": "output_text", "text": self.reply.transcript}])
        await self.session.send(self._base("response.output_item.done", item=item))
        return "completed"

    async def _function_call(self, name: str, arguments: str) -> str:
        item_id, call_id = self.server.new_id("item"), self.server.new_id("call")
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "name": name,
            "call_id": call_id,
            "arguments": "",
        }
        self.output.append(item)
        await self.session.send(self._base("response.output_item.added", item=dict(item)))
        half = len(arguments) // 2
        for part in (arguments[:half], arguments[half:]):
            await self.session.send(
                self._base("response.function_call_arguments.delta", item_id=item_id, call_id=call_id, delta=part)
            )
        await self.session.send(
            self._base(
                "response.function_call_arguments.done",
                item_id=item_id,
                call_id=call_id,
                name=name,
                arguments=arguments,
            )
        )
        item.update(status="completed", arguments=arguments)
        self.session.call_ids.add(call_id)
        await self.session.send(self._base("response.output_item.done", item=item))
        return "completed"

    async def _garbage(self) -> None:
        await self.session.send({"type": "response.future_event", "weird": [1, {"x": None}]})
        await self.session.send({"type": "rate_limits.updated", "rate_limits": "not-a-list"})
        await self.session.send({"no_type": True})
        await self.session.send_raw("{this is not json")
        await self.session.send_raw(json.dumps(["a", "list"]))

    def _modalities(self) -> Any:
        return self.params.get("output_modalities") or self.session.config.get("output_modalities")

    def _response(self, status: str) -> dict[str, Any]:
        cfg = self.session.config
        resp: dict[str, Any] = {
            "id": self.response_id,
            "object": "realtime.response",
            "status": status,
            "output": self.output,
            "conversation_id": None if self.params.get("conversation") == "none" else "conv_test",
            "output_modalities": self._modalities(),
            "metadata": self.params.get("metadata"),
            "max_output_tokens": cfg.get("max_output_tokens"),
            "audio": {"output": cfg["audio"]["output"]},
            "usage": None,
            "status_details": None,
        }
        if status == "cancelled":
            resp["status_details"] = {"type": "cancelled", "reason": self.cancel_reason or "client_cancelled"}
        if status != "in_progress":
            resp["usage"] = self._usage()
        return resp

    def _usage(self) -> dict[str, Any]:
        """Realistic token counts: context grows each turn and the earlier part is cached."""
        ctx = self.session.context
        instructions = len(str(self.session.config.get("instructions") or "")) // 4
        in_text, in_audio = instructions + ctx["text"], ctx["audio"]
        cached_text, cached_audio = ctx["cached_text"], ctx["cached_audio"]
        out_audio = self.sent_ms // 50  # ~20 tokens per second of assistant audio
        out_text = len(self.reply.transcript) // 4 + 1
        if self.reply.function_call is not None:
            out_text, out_audio = len(self.reply.function_call[1]) // 4 + 5, 0
        ctx["cached_text"], ctx["cached_audio"] = in_text, in_audio
        ctx["text"] += out_text
        ctx["audio"] += out_audio
        return {
            "total_tokens": in_text + in_audio + out_text + out_audio,
            "input_tokens": in_text + in_audio,
            "output_tokens": out_text + out_audio,
            "input_token_details": {
                "text_tokens": in_text,
                "audio_tokens": in_audio,
                "image_tokens": 0,
                "cached_tokens": cached_text + cached_audio,
                "cached_tokens_details": {
                    "text_tokens": cached_text,
                    "audio_tokens": cached_audio,
                    "image_tokens": 0,
                },
            },
            "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
        }
