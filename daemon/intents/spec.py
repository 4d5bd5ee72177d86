"""The household's declared commands as hassil intents: checked at load, matched against recognized text.

Why hassil: it is Home Assistant's own sentence-template language and matcher, so a template a user already
wrote for Home Assistant works here unchanged, and the text the recognizer hears is matched back through
the very templates the grammar was generated from (a partial or off-grammar hypothesis never matches).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hassil import Intents, recognize
from hassil.expression import Expression, Group, ListReference, RuleReference
from hassil.parse_expression import parse_sentence

from daemon.config.settings import CommandIntent, CommandSettings

SLOT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
BUILTIN_TOOLS = ("get_time",)


@dataclass(frozen=True, slots=True)
class Command:
    """A recognized command: the intent, its slot values (typed as declared) and the words heard."""

    intent: CommandIntent
    slots: dict[str, Any]
    said: dict[str, str]
    """Each slot's phrase as spoken ("on" for the value true): what the confirmation repeats."""
    text: str

    @property
    def arguments(self) -> dict[str, Any]:
        """The tool's arguments, exactly as the cloud model would send them."""
        return {k: _fill(v, self.slots) for k, v in self.intent.arguments.items()}

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)

    @property
    def confirmation(self) -> str:
        text = SLOT.sub(lambda m: self.said.get(m.group(1), m.group(0)), self.intent.say).strip()
        return text[:1].upper() + text[1:]


def _fill(value: Any, slots: Mapping[str, Any]) -> Any:
    if not isinstance(value, str):
        return value
    whole = SLOT.fullmatch(value)
    if whole and whole.group(1) in slots:
        return slots[whole.group(1)]
    return SLOT.sub(lambda m: str(slots.get(m.group(1), m.group(0))), value)


def list_values(values: list[str] | Mapping[str, Any]) -> list[tuple[str, Any]]:
    """(phrase, value) pairs of a declared list: a plain list means each phrase is its own value."""
    if isinstance(values, Mapping):
        return [(str(k), v) for k, v in values.items()]
    return [(v, v) for v in values]


def list_names(expr: Expression) -> list[str]:
    if isinstance(expr, ListReference):
        return [expr.list_name]
    if isinstance(expr, Group):
        return [n for item in expr.items for n in list_names(item)]
    return []


def rule_names(expr: Expression) -> set[str]:
    if isinstance(expr, RuleReference):
        return {expr.rule_name}
    if isinstance(expr, Group):
        return {n for item in expr.items for n in rule_names(item)}
    return set()


class CommandBook:
    """The declared commands, ready to match text (hassil) and to generate a grammar from."""

    def __init__(self, cfg: CommandSettings) -> None:
        self.cfg = cfg
        self.by_name = {i.name: i for i in cfg.intents}
        self.sentences = {i.name: [parse_sentence(s) for s in i.sentences] for i in cfg.intents}
        self.lists = {name: list_values(values) for name, values in cfg.lists.items()}
        self._intents = Intents.from_dict(
            {
                "language": "en",
                "intents": {i.name: {"data": [{"sentences": list(i.sentences)}]} for i in cfg.intents},
                "lists": {
                    name: {"values": [{"in": phrase, "out": value} for phrase, value in pairs]}
                    for name, pairs in self.lists.items()
                },
            }
        )

    def match(self, text: str) -> Command | None:
        """The command these exact words say, or None (a partial or different sentence is no command)."""
        result = recognize(text, self._intents)
        if result is None:
            return None
        slots = {name: entity.value for name, entity in result.entities.items()}
        said = {name: str(entity.text).strip() for name, entity in result.entities.items()}
        return Command(self.by_name[result.intent.name], slots, said, text)
