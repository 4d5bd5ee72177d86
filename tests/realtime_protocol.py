"""Client-event validation the way the GA Realtime API does it (for tests/realtime_server.py).

Why a schema tree instead of the SDK's pydantic models: the SDK models accept extra keys, while the real API
rejects every unknown or beta-era parameter with `unknown_parameter` and the offending path. A tree of allowed
keys reproduces exactly that, with messages worded like the API's.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

Schema = dict[str, Any]
LEAF: None = None

_FORMAT: Schema = {"type": LEAF, "rate": LEAF}
_TURN_DETECTION: Schema = {
    k: LEAF
    for k in (
        "type",
        "create_response",
        "interrupt_response",
        "threshold",
        "prefix_padding_ms",
        "silence_duration_ms",
        "idle_timeout_ms",
        "eagerness",
    )
}
SESSION_SCHEMA: Schema = {
    **{
        k: LEAF
        for k in (
            "type",
            "model",
            "instructions",
            "output_modalities",
            "max_output_tokens",
            "tools",
            "tool_choice",
            "tracing",
            "truncation",
            "include",
            "prompt",
            "parallel_tool_calls",
            "reasoning",
        )
    },
    "audio": {
        "input": {
            "format": _FORMAT,
            "transcription": {"model": LEAF, "language": LEAF, "prompt": LEAF},
            "noise_reduction": {"type": LEAF},
            "turn_detection": _TURN_DETECTION,
        },
        "output": {"format": _FORMAT, "voice": LEAF, "speed": LEAF},
    },
}
EVENT_KEYS: dict[str, set[str]] = {
    "session.update": {"session"},
    "input_audio_buffer.append": {"audio"},
    "input_audio_buffer.commit": set(),
    "input_audio_buffer.clear": set(),
    "response.create": {"response"},
    "response.cancel": {"response_id"},
    "conversation.item.create": {"item", "previous_item_id"},
    "conversation.item.truncate": {"item_id", "content_index", "audio_end_ms"},
    "conversation.item.delete": {"item_id"},
    "conversation.item.retrieve": {"item_id"},
}
VOICES = {"alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"}
MIN_COMMIT_BYTES = 4800
"""100 ms of 24 kHz PCM16: the API refuses to commit less."""


class ProtocolError(Exception):
    """One `error` event to send back: code, message and the parameter path, as the API words them."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def unknown(path: str) -> ProtocolError:
    return ProtocolError("unknown_parameter", f"Unknown parameter: '{path}'.", path)


def invalid(path: str, value: Any, expected: str) -> ProtocolError:
    return ProtocolError(
        "invalid_value", f"Invalid value for '{path}': {value!r}. Supported values are: {expected}.", path
    )


def missing(path: str) -> ProtocolError:
    return ProtocolError("missing_required_parameter", f"Missing required parameter: '{path}'.", path)


def check_event(event: Any) -> dict[str, Any]:
    """Shape of any client event; returns it as a dict or raises ProtocolError."""
    if not isinstance(event, dict):
        raise ProtocolError("invalid_json", "The server could not parse the event: expected a JSON object.")
    etype = event.get("type")
    if etype not in EVENT_KEYS:
        raise ProtocolError(
            "invalid_value",
            f"Invalid value: {etype!r}. Supported values are: {', '.join(sorted(EVENT_KEYS))}.",
            "type",
        )
    allowed = EVENT_KEYS[etype] | {"type", "event_id"}
    for key in event:
        if key not in allowed:
            raise unknown(key)
    return event


def check_keys(node: Any, schema: Schema, path: str) -> None:
    if not isinstance(node, dict):
        raise ProtocolError("invalid_type", f"Invalid type for '{path}': expected an object.", path)
    for key, value in node.items():
        if key not in schema:
            raise unknown(f"{path}.{key}")
        sub = schema[key]
        if sub is not None and value is not None:
            check_keys(value, sub, f"{path}.{key}")


def check_session(session: Any) -> None:
    """GA `session.update` payload: allowed keys, then the values the API constrains."""
    check_keys(session, SESSION_SCHEMA, "session")
    if "type" not in session:
        raise missing("session.type")
    if session["type"] != "realtime":
        raise invalid("session.type", session["type"], "'realtime', 'transcription'")
    mods = session.get("output_modalities")
    if mods is not None and mods not in (["audio"], ["text"]):
        raise invalid("session.output_modalities", mods, "['audio'], ['text']")
    audio = session.get("audio") or {}
    for side in ("input", "output"):
        fmt = (audio.get(side) or {}).get("format")
        if fmt is not None:
            check_format(fmt, f"session.audio.{side}.format")
    td = (audio.get("input") or {}).get("turn_detection")
    if td is not None and td.get("type") not in ("server_vad", "semantic_vad"):
        raise invalid("session.audio.input.turn_detection.type", td.get("type"), "'server_vad', 'semantic_vad'")
    voice = (audio.get("output") or {}).get("voice")
    if voice is not None and voice not in VOICES:
        raise invalid("session.audio.output.voice", voice, ", ".join(sorted(VOICES)))
    mot = session.get("max_output_tokens")
    if mot is not None and mot != "inf" and not (isinstance(mot, int) and 1 <= mot <= 4096):
        raise invalid("session.max_output_tokens", mot, "an integer 1-4096 or 'inf'")
    for i, tool in enumerate(session.get("tools") or []):
        check_tool(tool, f"session.tools[{i}]")


RESPONSE_SCHEMA: Schema = {
    "conversation": LEAF,
    "input": LEAF,
    "instructions": LEAF,
    "max_output_tokens": LEAF,
    "metadata": LEAF,
    "output_modalities": LEAF,
    "tool_choice": LEAF,
    "tools": LEAF,
    "audio": LEAF,
    "prompt": LEAF,
}
"""`response.create`'s `response` parameters (the SDK's RealtimeResponseCreateParams)."""


def check_response(params: Any) -> dict[str, Any]:
    """`response.create {response: ...}`: allowed keys and the values the API constrains."""
    if params is None:
        return {}
    check_keys(params, RESPONSE_SCHEMA, "response")
    conversation = params.get("conversation", "auto")
    if conversation not in ("auto", "none"):
        raise invalid("response.conversation", conversation, "'auto', 'none'")
    mods = params.get("output_modalities")
    if mods is not None and mods not in (["audio"], ["text"]):
        raise invalid("response.output_modalities", mods, "['audio'], ['text']")
    metadata = params.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict)
        or len(metadata) > 16
        or not all(isinstance(k, str) and isinstance(v, str) and len(v) <= 512 for k, v in metadata.items())
    ):
        raise invalid("response.metadata", metadata, "up to 16 string keys with string values")
    mot = params.get("max_output_tokens")
    if mot is not None and mot != "inf" and not (isinstance(mot, int) and 1 <= mot <= 4096):
        raise invalid("response.max_output_tokens", mot, "an integer 1-4096 or 'inf'")
    return dict(params)


def check_format(fmt: Any, path: str) -> None:
    if not isinstance(fmt, dict) or fmt.get("type") not in ("audio/pcm", "audio/pcmu", "audio/pcma"):
        raise invalid(f"{path}.type", (fmt or {}).get("type"), "'audio/pcm', 'audio/pcmu', 'audio/pcma'")
    if fmt["type"] == "audio/pcm" and fmt.get("rate", 24000) != 24000:
        raise invalid(f"{path}.rate", fmt.get("rate"), "24000")


def check_tool(tool: Any, path: str) -> None:
    check_keys(tool, {"type": LEAF, "name": LEAF, "description": LEAF, "parameters": LEAF}, path)
    if tool.get("type") != "function":
        raise invalid(f"{path}.type", tool.get("type"), "'function', 'mcp'")
    if not tool.get("name"):
        raise missing(f"{path}.name")


def check_item(item: Any) -> dict[str, Any]:
    """`conversation.item.create` item: a message or a function_call_output."""
    if not isinstance(item, dict):
        raise missing("item")
    kind = item.get("type")
    if kind == "function_call_output":
        check_keys(item, {"type": LEAF, "call_id": LEAF, "output": LEAF, "id": LEAF}, "item")
        if not item.get("call_id"):
            raise missing("item.call_id")
        if not isinstance(item.get("output"), str):
            raise ProtocolError("invalid_type", "Invalid type for 'item.output': expected a string.", "item.output")
    elif kind == "message":
        check_keys(item, {"type": LEAF, "role": LEAF, "content": LEAF, "id": LEAF}, "item")
        if item.get("role") not in ("user", "assistant", "system"):
            raise invalid("item.role", item.get("role"), "'user', 'assistant', 'system'")
        if not isinstance(item.get("content"), list):
            raise missing("item.content")
    else:
        raise invalid("item.type", kind, "'message', 'function_call', 'function_call_output'")
    return item


def decode_audio(event: dict[str, Any]) -> bytes:
    """`input_audio_buffer.append`: base64 PCM16 (an even number of bytes)."""
    audio = event.get("audio")
    if not isinstance(audio, str):
        raise missing("audio")
    try:
        pcm = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("invalid_value", "Invalid 'audio': expected base64-encoded audio.", "audio") from None
    if len(pcm) % 2:
        raise ProtocolError("invalid_value", "Invalid 'audio': PCM16 audio must have an even byte count.", "audio")
    return pcm


def commit_empty(buffered: int) -> ProtocolError:
    return ProtocolError(
        "input_audio_buffer_commit_empty",
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
        f"but buffer only has {buffered / 48:.2f}ms of audio.",
    )
