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
    """Read, override and validate. Raises ConfigError with a message naming key, value and expectation."""
    path = Path(path) if path is not None else default_config_path()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConfigError(f"config file {path} not found (pass --config FILE or create it)") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from e
    for item in overrides:
        apply_override(raw, item)
    return from_dict(raw, source=str(path))


def from_dict(raw: dict[str, Any], source: str = "config") -> Settings:
    _reject_secrets(raw, ())
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as e:
        lines = [format_error(err, raw) for err in e.errors()]
        raise ConfigError(f"{source}: invalid configuration:\n  " + "\n  ".join(lines)) from None
    if settings.commands.intents or settings.commands.local != "off":
        from daemon.intents.spec import problems  # hassil is only loaded when commands are declared

        lines = problems(settings)
        if lines:
            raise ConfigError(f"{source}: invalid configuration:\n  " + "\n  ".join(lines))
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
    dotted = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        hint = ""
        if parent is not None:
            close = difflib.get_close_matches(loc[-1], list(parent.model_fields), n=1)
            hint = f" (did you mean {'.'.join([*loc[:-1], close[0]])}?)" if close else ""
            hint += f"; expected one of: {', '.join(parent.model_fields)}"
        return f"{dotted}: unknown key{hint}"
    given = err.get("input")
    shown = "(missing)" if err["type"] == "missing" else repr(given)
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
