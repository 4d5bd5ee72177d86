"""Reading config.toml: TOML → overrides → validation, with errors a person can act on.

Every error names the key path, the value given and what was expected; unknown keys get a "did you mean".
The settings models themselves live in daemon.config.
"""

from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from daemon.config.settings import ConfigError, Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 (Jetson)
    import tomli as tomllib

CONFIG_MAX_BYTES = 1024 * 1024
"""A config.toml is a few KB; reading stops here so `--config /dev/zero` is an error, not a hang."""
_BOM = "\ufeff"
_SHOWN_VALUE_CHARS = 80
SECRET_KEYS = {"api_key", "password", "openai_api_key", "mqtt_password", "secret", "token"}


def default_config_path() -> Path:
    """$HARK_CONFIG, else /etc/hark/config.toml if present, else the checkout's config.toml."""
    if os.environ.get("HARK_CONFIG"):
        return Path(os.environ["HARK_CONFIG"])
    etc = Path("/etc/hark/config.toml")
    if etc.exists():
        return etc
    return Path(__file__).resolve().parents[2] / "config.toml"


def load(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Settings:
    """Read, override and validate. Raises ConfigError with a message naming key, value and expectation.
    (Whether the files the settings name are usable is checked by the command that starts: daemon.cli.files.)"""
    path = Path(path) if path is not None else default_config_path()
    raw = _parse_toml(path, _read_text(path))
    for item in overrides:
        apply_override(raw, item)
    return from_dict(raw, source=str(path))


def _read_text(path: Path) -> str:
    """The file as text; a UTF-8 byte-order mark (Windows editors add one) is dropped."""
    try:
        with path.open("rb") as f:
            data = f.read(CONFIG_MAX_BYTES + 1)
    except FileNotFoundError as e:
        raise ConfigError(f"config file {path} not found (pass --config FILE or create it)") from e
    except IsADirectoryError as e:
        raise ConfigError(f"config file {path} is a folder; expected a TOML file, e.g. {path / 'config.toml'}") from e
    except PermissionError as e:
        raise ConfigError(f"config file {path}: permission denied; make it readable by the user hark runs as") from e
    except OSError as e:
        raise ConfigError(f"config file {path}: cannot read: {e}") from e
    if len(data) > CONFIG_MAX_BYTES:
        raise ConfigError(f"config file {path} is larger than 1 MB; expected a TOML file of a few KB (wrong file?)")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError(f"{path}: the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {e.start}); save it as UTF-8") from None
    return text.removeprefix(_BOM)


def _parse_toml(path: Path, text: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    except ValueError as e:  # e.g. an integer of more than 4,300 digits: Python refuses to convert it
        raise ConfigError(f"{path}: a value cannot be read: {e}") from None
    return data


def from_dict(raw: dict[str, Any], source: str = "config") -> Settings:
    _reject_secrets(raw, ())
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as e:
        lines = [format_error(err, raw) for err in e.errors()]
        raise ConfigError(f"{source}: invalid configuration:\n  " + "\n  ".join(lines)) from None
    return settings


def apply_override(raw: dict[str, Any], item: str) -> None:
    """--set section.key=value: the value is read as a TOML value if it parses, else as a string."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. --set wake.threshold=0.6")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    except ValueError as e:  # valid TOML Python cannot convert, e.g. an integer of more than 4,300 digits
        raise ConfigError(f"--set {key}=…: the value cannot be read ({e})") from None
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item!r}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _reject_secrets(node: Any, path: tuple[str, ...]) -> None:
    if not isinstance(node, dict):
        return
    for k, v in node.items():
        if k.lower() in SECRET_KEYS:
            dotted = ".".join((*path, k))
            raise ConfigError(
                f"{dotted}: secrets are not read from config files; set OPENAI_API_KEY or "
                "HARK_MQTT_PASSWORD in the environment (the installer keeps them in /etc/hark/env, mode 0600)"
            )
        _reject_secrets(v, (*path, k))


def format_error(err: Any, raw: dict[str, Any]) -> str:
    loc = [str(p) for p in err["loc"]]
    dotted = ".".join(_shown_key(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        hint = ""
        if parent is not None:
            close = difflib.get_close_matches(loc[-1], list(parent.model_fields), n=1)
            hint = f" (did you mean {'.'.join([*loc[:-1], close[0]])}?)" if close else ""
            hint += f"; expected one of: {', '.join(parent.model_fields)}"
        return f"{dotted}: unknown key{hint}"
    given = err.get("input")
    shown = "(missing)" if err["type"] == "missing" else _shown_value(given)
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{dotted} = {shown}: {msg}"


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = Settings
    for part in loc:
        if part.isdigit():
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        inner = getattr(ann, "__args__", None)
        candidates = [ann, *(inner or ())]
        nxt = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            return None
        model = nxt
    return model


def _shown_value(value: Any) -> str:
    """repr() of a value given, cut short: a 1 MB string in an error message helps nobody."""
    try:
        text = repr(value)
    except ValueError:  # an int too long for Python to print
        return "(a number too long to show)"
    return text if len(text) <= _SHOWN_VALUE_CHARS else text[:_SHOWN_VALUE_CHARS] + "…"


def _shown_key(key: str) -> str:
    """A key as typed, or repr() when it holds a line break or another unprintable character; cut short."""
    shown = key if key.isprintable() else repr(key)
    return shown if len(shown) <= _SHOWN_VALUE_CHARS else shown[:_SHOWN_VALUE_CHARS] + "…"
