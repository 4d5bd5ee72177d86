"""Checks [commands] at start-up: every mistake names the intent, what is wrong and the fix (exit 78).

Apart from daemon.intents.spec because one check needs the recognizer's dictionary (a word it cannot
pronounce could never be heard), and the recognizer is built on the spec.
"""

from __future__ import annotations

from hassil.parse_expression import parse_sentence

from daemon.config.settings import CommandSettings, Settings
from daemon.intents.grammar import words
from daemon.intents.recognizer import dictionary_words
from daemon.intents.spec import BUILTIN_TOOLS, SLOT, list_names, list_values, rule_names


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
            names = set(list_names(parsed.expression))
            rules = sorted(rule_names(parsed.expression))
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
