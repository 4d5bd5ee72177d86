"""MQTT command payloads → typed commands.

Why a module of its own: everything that arrives on `<base>/cmd/...` comes from the network, so it is checked
here, once, into frozen dataclasses. The bridge only ever hands these to the assistant, never raw bytes, and
every rejection says which topic it was and what was expected, so a person can fix their automation.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

COMMANDS = ("listen", "stop", "say", "ask", "mute", "volume", "wake")
"""Topic suffixes under `<base>/cmd/` (and `hark/all/cmd/`)."""
ONE_SHOT = frozenset({"listen", "stop", "say", "ask"})
"""Actions that must not be replayed from a retained message on every reconnect."""

_ON = frozenset({"on", "true", "1", "yes"})
_OFF = frozenset({"off", "false", "0", "no"})
_SHOWN_CHARS = 40
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
"""A plain decimal in ASCII digits: 42, 42.0, .5, -0. Not 1e2, 1_0, ٤٢ or ４２ (Python's float() takes all of those)."""
_NUMBER_MAX_CHARS = 32
"""Longer numbers are refused before any conversion: no 4,000-digit int ever reaches int() or float()."""
_JSON_WHITESPACE = " \t\r\n"
_TEXT_CONTROLS_ALLOWED = frozenset("\n\t\r")


@dataclass(frozen=True, slots=True)
class Listen:
    """Start a turn as if the wake word had been heard."""


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop answering / cancel the current turn."""


@dataclass(frozen=True, slots=True)
class Say:
    """Speak `text` with the local voice; `priority` interrupts what is playing."""

    text: str
    priority: bool = False


@dataclass(frozen=True, slots=True)
class Ask:
    """Send `text` to the Realtime model as a question and speak the answer."""

    text: str


@dataclass(frozen=True, slots=True)
class Mute:
    """Muted = capture stopped, not just ignored."""

    on: bool


@dataclass(frozen=True, slots=True)
class Volume:
    percent: int


@dataclass(frozen=True, slots=True)
class Wake:
    """Wake-word detection on/off."""

    on: bool


Command = Listen | Stop | Say | Ask | Mute | Volume | Wake


class CommandError(ValueError):
    """A payload that cannot become a command; `str()` names the topic suffix and what was expected."""

    def __init__(self, command: str, problem: str) -> None:
        super().__init__(f"cmd/{command}: {problem}")
        self.command = command
        self.problem = problem


def shown(text: str | bytes) -> str:
    """A short, safe rendering of a payload for error messages and logs."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    cut = text[:_SHOWN_CHARS]
    return repr(cut) + ("…" if len(text) > _SHOWN_CHARS else "")


def parse(command: str, payload: bytes, max_bytes: int) -> Command:
    """Validate one command payload. Raises CommandError naming the command and the expectation."""
    if command not in COMMANDS:
        raise CommandError(command, f"unknown command; expected one of {', '.join(COMMANDS)}")
    if len(payload) > max_bytes:
        raise CommandError(
            command, f"payload is {len(payload)} bytes; the limit is {max_bytes} (mqtt.max_payload_bytes)"
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CommandError(command, f"payload is not UTF-8 text (bad byte at offset {e.start})") from None
    if command == "listen":
        return Listen()
    if command == "stop":
        return Stop()
    if command in ("say", "ask"):
        return _parse_text(command, text)
    if command == "volume":
        return Volume(_parse_percent(text))
    on = _parse_switch(command, text)
    return Mute(on) if command == "mute" else Wake(on)


def _parse_switch(command: str, text: str) -> bool:
    word = text.strip().lower()
    if word in _ON:
        return True
    if word in _OFF:
        return False
    raise CommandError(command, f"got {shown(text)}; expected ON or OFF (also on/off, true/false, 1/0)")


def _parse_percent(text: str) -> int:
    """A plain number (42, 42.0, " 42 ") or {"volume": 42}; checked as text before anything converts it."""
    raw = text.strip(_JSON_WHITESPACE)
    number = _json_volume(raw) if raw.startswith("{") else raw
    return _percent_from(text, number)


def _percent_from(text: str, number: str | None) -> int:
    expected = "expected a number from 0 to 100 in ASCII digits, e.g. 42 or 42.5"
    if not number:
        raise CommandError("volume", f"got {shown(text)}; {expected}")
    if len(number) > _NUMBER_MAX_CHARS:
        raise CommandError("volume", f"got a {len(number)}-character number; {expected}")
    if not _NUMBER.fullmatch(number):
        raise CommandError("volume", f"got {shown(text)}; {expected} (no exponents, separators or other digits)")
    value = Decimal(number)  # exact and bounded: at most 32 ASCII characters
    if not 0 <= value <= 100:
        raise CommandError("volume", f"{number} is out of range; {expected}")
    return round(value)


class _Number(str):
    """A JSON number kept as its source text, so json never converts it (no huge int, no inf)."""


def _json_volume(raw: str) -> str | None:
    """{"volume": 42}: some automations only send JSON. Returns the number's text, or None."""
    try:
        obj = json.loads(raw, parse_int=_Number, parse_float=_Number, parse_constant=lambda _: None)
    except (ValueError, RecursionError):
        return None
    if isinstance(obj, dict) and set(obj) == {"volume"} and isinstance(obj["volume"], _Number):
        return str(obj["volume"])
    return None


def _parse_text(command: str, text: str) -> Say | Ask:
    """Plain text, or a JSON object {"text": ..., "priority": ...} (priority for `say` only)."""
    allowed = ("text", "priority") if command == "say" else ("text",)
    example = '{"text": "Dinner is ready", "priority": true}' if command == "say" else '{"text": "..."}'
    priority = False
    if text.lstrip().startswith("{"):
        obj = _json_object(command, text, example)
        unknown = sorted(set(obj) - set(allowed))
        if unknown:
            raise CommandError(command, f"unknown key(s) {', '.join(unknown)}; expected {', '.join(allowed)}")
        if not isinstance(obj.get("text"), str):
            raise CommandError(command, f'"text" must be a string; expected plain text or {example}')
        raw_priority = obj.get("priority", False)
        if not isinstance(raw_priority, bool):
            raise CommandError(command, f'"priority" must be true or false, got {shown(str(raw_priority))}')
        text, priority = obj["text"], raw_priority
    text = text.strip()
    if not text:
        raise CommandError(command, f"empty text; expected something to {command}, e.g. 'Dinner is ready'")
    _reject_controls(command, text)
    return Say(text, priority) if command == "say" else Ask(text)


def _reject_controls(command: str, text: str) -> None:
    """Piper cannot speak NUL, other control characters or lone surrogates (JSON "\\ud800"): refuse them here,
    where the sender gets an error event, rather than fail in the middle of an announcement."""
    for i, c in enumerate(text):
        if c not in _TEXT_CONTROLS_ALLOWED and unicodedata.category(c) in ("Cc", "Cs"):
            raise CommandError(
                command,
                f"control character U+{ord(c):04X} at position {i}; expected plain text "
                "(line breaks and tabs are fine)",
            )


def _json_object(command: str, text: str, example: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise CommandError(command, f"invalid JSON ({e}); expected plain text or {example}") from None
    if not isinstance(obj, dict):
        raise CommandError(command, f"expected plain text or {example}")
    return obj
