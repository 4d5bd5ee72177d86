"""What the Realtime session hands to the assistant, and the GA `session.update` it sends.

The assistant never sees SDK objects: it gets these small frozen events, so it can be tested without a
socket and the protocol can change in one place. A `Failure` always carries a `FallbackReason` the
fallback voice can speak (config `fallback.messages.<reason>`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from daemon.answer.realtime.usage import Usage
from daemon.answer.reasons import FallbackReason
from daemon.config.settings import RealtimeSettings

RATE_HZ = 24_000
"""The GA API takes and returns PCM16 mono at exactly this rate."""
BYTES_PER_MS = RATE_HZ * 2 // 1000
MIN_COMMIT_MS = 100
"""The API refuses to commit less (`input_audio_buffer_commit_empty`)."""


class RealtimeFailure(Exception):
    """open() could not give a usable session: `reason` picks the fallback message, `detail` is for logs."""

    def __init__(self, reason: FallbackReason, detail: str, code: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.code = code


@dataclass(frozen=True, slots=True)
class AudioDelta:
    """Answer audio, 24 kHz PCM16 mono; `item_id` is what a barge-in truncates."""

    pcm24k: bytes
    item_id: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """Answer text (realtime.output = "text"): the local voice speaks it."""

    text: str


@dataclass(frozen=True, slots=True)
class Transcript:
    role: Literal["user", "assistant"]
    text: str
    final: bool


@dataclass(frozen=True, slots=True)
class ServerSpeechStarted:
    """Server VAD heard the user start speaking (a barge-in when an answer is playing)."""

    audio_start_ms: int


@dataclass(frozen=True, slots=True)
class ToolCall:
    name: str
    call_id: str
    output: str


@dataclass(frozen=True, slots=True)
class ResponseDone:
    """`follow_up` = a tool result was sent and another response of the same turn is coming."""

    status: str
    usage: Usage
    cost_usd: float
    follow_up: bool = False


@dataclass(frozen=True, slots=True)
class Failure:
    reason: FallbackReason
    code: str
    message: str


RealtimeEvent = AudioDelta | TextDelta | Transcript | ServerSpeechStarted | ToolCall | ResponseDone | Failure

# Server error codes that do not end the turn: logged and ignored (see RealtimeClient._on_error).
BENIGN_ERRORS = {
    "response_cancel_not_active": "nothing to cancel: the answer had already finished",
    "item_truncate_invalid_item_id": "the answer item to truncate is gone; the context keeps the full answer",
    "conversation_already_has_active_response": "a response was requested while one was active (a bug here)",
}


def session_payload(settings: RealtimeSettings, tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The one GA `session.update` body: audio/pcm 24 kHz both ways, no beta keys, no temperature."""
    fmt = {"type": "audio/pcm", "rate": RATE_HZ}
    audio_in: dict[str, Any] = {"format": fmt}
    if settings.transcription_model:
        audio_in["transcription"] = {"model": settings.transcription_model, "language": settings.language}
    if settings.turn_detection == "local":
        audio_in["turn_detection"] = None
    else:
        audio_in["turn_detection"] = {
            "type": settings.turn_detection,
            "create_response": True,
            "interrupt_response": True,
        }
    session: dict[str, Any] = {
        "type": "realtime",
        "model": settings.model,
        "instructions": settings.instructions,
        "output_modalities": [settings.output],
        "audio": {"input": audio_in, "output": {"format": fmt, "voice": settings.voice}},
        "max_output_tokens": settings.max_output_tokens,
    }
    if tools:
        session["tools"] = tools
        session["tool_choice"] = "auto"
    return session


PROBE_METADATA = {"hark": "probe"}
"""Marks the circuit breaker's probe response, so its events never reach a turn."""


def probe_response() -> dict[str, Any]:
    """`response.create` body of the breaker's probe: a one-word text answer outside the conversation
    (`conversation: "none"` leaves the household's context untouched; a few tokens per probe)."""
    return {
        "conversation": "none",
        "output_modalities": ["text"],
        "instructions": "Reply with the single word OK.",
        "max_output_tokens": 16,
        "metadata": dict(PROBE_METADATA),
        "input": [],
    }
