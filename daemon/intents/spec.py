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

from daemon.config.settings import CommandIntent, CommandSettings, Settings

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


def problems(settings: Settings) -> list[str]:
    """Every mistake in [commands], each naming the intent, what is wrong and the fix (empty = fine)."""
    cfg = settings.commands
    tools = {t.name: t for t in settings.tools}
    out: list[str] = []
    for intent in cfg.intents:
        where = f"commands.intents {intent.name!r}"
        if intent.tool not in tools and intent.tool not in BUILTIN_TOOLS:
            out.append(
                f"{where}: tool {intent.tool!r} is not configured; add a [[tools]] entry with "
                f"name = {intent.tool!r} or name one of: {', '.join([*tools, *BUILTIN_TOOLS])}"
            )
        elif intent.tool in tools:
            required = tools[intent.tool].parameters.get("required", [])
            missing = [k for k in required if k not in intent.arguments]
            if missing:
                out.append(
                    f"{where}: tool {intent.tool!r} requires argument(s) {', '.join(missing)}; add them to "
                    f'arguments, e.g. arguments = {{ {missing[0]} = "{{{missing[0]}}}" }}'
                )
        slots_everywhere: set[str] | None = None
        for sentence in intent.sentences:
            try:
                parsed = parse_sentence(sentence)
            except Exception as e:  # hassil raises several kinds; the message is what matters
                out.append(
                    f"{where}: sentence {sentence!r} does not parse ({e}); use (a|b) for alternatives, "
                    "[word] for optional words and {list} for a slot"
                )
                continue
            names = set(_list_names(parsed.expression))
            rules = sorted(_rule_names(parsed.expression))
            if rules:
                out.append(f"{where}: sentence {sentence!r} uses <{rules[0]}>; rules are not supported, write it out")
            for name in sorted(names - set(cfg.lists)):
                out.append(
                    f"{where}: sentence {sentence!r} uses {{{name}}} but [commands.lists] has no {name}; add "
                    f'{name} = ["…"] with the phrases it stands for'
                )
            slots_everywhere = names if slots_everywhere is None else slots_everywhere & names
        templates = [v for v in [intent.say, *intent.arguments.values()] if isinstance(v, str)]
        used = {m.group(1) for v in templates for m in SLOT.finditer(v)}
        for name in sorted(used - (slots_everywhere or set())):
            if slots_everywhere is not None:
                out.append(
                    f"{where}: {{{name}}} is used in say/arguments but not every sentence has it; add "
                    f"{{{name}}} to each sentence or remove it from say/arguments"
                )
    declared = [i.name for i in cfg.intents]
    for dup in sorted({n for n in declared if declared.count(n) > 1}):
        out.append(f"commands.intents {dup!r}: declared twice; give each intent its own name")
    if not out and cfg.intents:
        out += _unpronounceable(cfg)
    if cfg.local != "off" and not cfg.intents:
        out.append(
            f'commands.local = "{cfg.local}" but no [[commands.intents]] are declared; declare some or set '
            'commands.local = "off"'
        )
    return out


def _unpronounceable(cfg: CommandSettings) -> list[str]:
    """Words the recognizer's dictionary cannot pronounce: it could never hear them."""
    from daemon.intents.grammar import words
    from daemon.intents.recognizer import dictionary_words

    known = dictionary_words()
    out = []
    for intent in cfg.intents:
        bad = sorted({w for s in intent.sentences for w in words(SLOT.sub(" ", s))} - known)
        if bad:
            out.append(
                f"commands.intents {intent.name!r}: the recognizer cannot pronounce {', '.join(bad)}; "
                'use dictionary words (numbers spelled out, e.g. "five", not "5")'
            )
    for name, values in cfg.lists.items():
        bad = sorted({w for phrase, _ in list_values(values) for w in words(phrase)} - known)
        if bad:
            out.append(
                f"commands.lists.{name}: the recognizer cannot pronounce {', '.join(bad)}; "
                "use dictionary words (numbers spelled out)"
            )
    return out


def _list_names(expr: Expression) -> list[str]:
    if isinstance(expr, ListReference):
        return [expr.list_name]
    if isinstance(expr, Group):
        return [n for item in expr.items for n in _list_names(item)]
    return []


def _rule_names(expr: Expression) -> set[str]:
    if isinstance(expr, RuleReference):
        return {expr.rule_name}
    if isinstance(expr, Group):
        return {n for item in expr.items for n in _rule_names(item)}
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
