"""Request validation for tests/cascade_server.py against the openai SDK's own param TypedDicts.

Why the TypedDicts: they are the SDK's statement of what each endpoint takes (required keys, literal values,
nested shapes). Like the real API, an unknown key is refused (400 "Unrecognized request argument"), a
missing required one too, and a literal outside its set; nested TypedDicts (messages, tool calls, tools)
are checked the same way, picking the union member by its `role`/`type`.
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from typing_extensions import NotRequired, Required, is_typeddict


class RequestError(Exception):
    """A 400 the way the API words it; `param` is the path of the offending value."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def validate(value: Any, td: type, path: str = "") -> None:
    """Raise RequestError if `value` is not what TypedDict `td` allows."""
    if not isinstance(value, dict):
        raise RequestError(f"Invalid type for '{path or 'body'}': expected an object", path)
    hints = get_type_hints(td, include_extras=True)
    for key in value:
        if key not in hints:
            raise RequestError(f"Unrecognized request argument supplied: {_join(path, key)}", _join(path, key))
    for key, hint in hints.items():
        required = _required(td, key, hint)
        if key not in value:
            if required:
                raise RequestError(f"Missing required parameter: '{_join(path, key)}'.", _join(path, key))
            continue
        _check(value[key], _strip(hint), _join(path, key))


def _required(td: type, key: str, hint: Any) -> bool:
    origin = get_origin(hint)
    if origin is Required:
        return True
    if origin is NotRequired:
        return False
    return key in getattr(td, "__required_keys__", frozenset())


def _strip(hint: Any) -> Any:
    while get_origin(hint) in (Required, NotRequired, typing.Annotated):
        hint = get_args(hint)[0]
    return hint


def _check(value: Any, hint: Any, path: str) -> None:
    hint = _strip(hint)
    origin = get_origin(hint)
    if is_typeddict(hint):
        validate(value, hint, path)
    elif origin is Literal:
        if value not in get_args(hint):
            allowed = ", ".join(repr(a) for a in get_args(hint))
            raise RequestError(f"Invalid value for '{path}': {value!r}; supported values are {allowed}", path)
    elif origin in (Union, types.UnionType):
        _check_union(value, [_strip(a) for a in get_args(hint)], path)
    elif origin in (list, collections.abc.Iterable, collections.abc.Sequence) and not isinstance(value, str):
        if not isinstance(value, list):
            raise RequestError(f"Invalid type for '{path}': expected an array", path)
        (item,) = get_args(hint) or (Any,)
        for i, v in enumerate(value):
            _check(v, item, f"{path}[{i}]")


def _check_union(value: Any, options: list[Any], path: str) -> None:
    if value is None and type(None) in options:
        return
    dicts = [o for o in options if is_typeddict(o)]
    if isinstance(value, dict) and dicts:
        for tag in ("role", "type"):
            if tag in value:
                tagged = [o for o in dicts if value[tag] in _literal_values(o, tag)]
                if tagged:
                    return _check(value, tagged[0], path)
        errors = []
        for option in dicts:
            try:
                return validate(value, option, path)
            except RequestError as e:
                errors.append(e)
        raise errors[0]
    for option in options:
        if not is_typeddict(option):
            try:
                return _check(value, option, path)
            except RequestError:
                continue
    return None


def _literal_values(td: type, key: str) -> tuple[Any, ...]:
    hint = _strip(get_type_hints(td, include_extras=True).get(key))
    return get_args(hint) if get_origin(hint) is Literal else ()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
