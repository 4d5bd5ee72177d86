"""The declared sentence templates as a JSGF grammar: the recognizer can only hear what the household said.

Why a grammar and not a language model: the decoder searches only the declared sentences (tens to
thousands of paths instead of a whole language), which is what makes a 2010-era acoustic model accurate
and cheap enough for a Pi. The same templates are matched again by hassil, so anything the decoder
returns that is not a whole declared sentence (a pruned, partial path) is never acted on.
"""

from __future__ import annotations

import itertools
import re

from hassil.expression import Alternative, Expression, ListReference, Permutation, Sequence, TextChunk

from daemon.intents.spec import CommandBook

WORD = re.compile(r"[a-z0-9][a-z0-9']*")


def words(text: str) -> list[str]:
    """Lower-case words as the dictionary spells them (punctuation dropped)."""
    return WORD.findall(text.lower())


def jsgf(book: CommandBook) -> str:
    """One public rule <command> = one rule per intent, one rule per slot list."""
    lines = ["#JSGF V1.0;", "grammar hark;"]
    intents = [_rule(name) for name in book.sentences]
    lines.append(f"public <command> = {' | '.join(intents) if intents else '<VOID>'};")
    for name, parsed in book.sentences.items():
        alts = [_expr(p.expression) for p in parsed]
        lines.append(f"{_rule(name)} = {' | '.join(f'( {a} )' for a in alts)};")
    for name, pairs in book.lists.items():
        phrases = sorted({" ".join(words(phrase)) for phrase, _ in pairs} - {""})
        lines.append(f"{_rule('list_' + name)} = {' | '.join(phrases) or '<VOID>'};")
    return "\n".join(lines) + "\n"


def vocabulary(book: CommandBook) -> set[str]:
    """Every word the grammar can produce (each must be in the recognizer's dictionary)."""
    out: set[str] = set()
    for parsed in book.sentences.values():
        for p in parsed:
            out |= _words_in(p.expression)
    for pairs in book.lists.values():
        for phrase, _ in pairs:
            out |= set(words(phrase))
    return out


def _rule(name: str) -> str:
    return "<" + re.sub(r"[^A-Za-z0-9_]", "_", name) + ">"


def _expr(expr: Expression) -> str:
    if isinstance(expr, TextChunk):
        return " ".join(words(expr.text)) or "<NULL>"
    if isinstance(expr, ListReference):
        return _rule("list_" + expr.list_name)
    if isinstance(expr, Permutation):
        orders = [" ".join(_expr(e) for e in order) for order in itertools.permutations(expr.items)]
        return "( " + " | ".join(f"( {o} )" for o in orders) + " )"
    if isinstance(expr, Alternative):
        alts = [_expr(e) for e in expr.items]
        real = [a for a in alts if a != "<NULL>"]
        body = " | ".join(real) or "<NULL>"
        return f"[ {body} ]" if expr.is_optional or len(real) < len(alts) else f"( {body} )"
    if isinstance(expr, Sequence):
        parts = [p for p in (_expr(e) for e in expr.items) if p != "<NULL>"]
        return " ".join(parts) or "<NULL>"
    raise ValueError(f"unsupported template part {type(expr).__name__}")


def _words_in(expr: Expression) -> set[str]:
    if isinstance(expr, TextChunk):
        return set(words(expr.text))
    if isinstance(expr, (Alternative, Sequence, Permutation)):
        return {w for e in expr.items for w in _words_in(e)}
    return set()
