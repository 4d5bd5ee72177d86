"""User choices made at run time (mute, volume, wake on/off) survive a restart.

They live apart from config.toml on purpose: the config is the administrator's, these are the household's
(set over MQTT), and the daemon must never rewrite a file a person edits.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from daemon.system.state_files import write_json_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RuntimeChoices:
    muted: bool = False
    volume: int = 70
    wake_enabled: bool = True


class ChoiceStore:
    """Load once at start; `update()` writes atomically (temp file + rename) and never raises."""

    def __init__(self, path: Path, defaults: RuntimeChoices) -> None:
        self.path = path
        self.current = self._load(defaults)

    def _load(self, defaults: RuntimeChoices) -> RuntimeChoices:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return defaults
        except (OSError, ValueError) as e:
            log.warning("ignoring %s (%s): starting from the configured mute/volume/wake values", self.path, e)
            return defaults
        if not isinstance(raw, dict):
            log.warning("ignoring %s: expected a JSON object", self.path)
            return defaults
        out = defaults
        if isinstance(raw.get("muted"), bool):
            out = replace(out, muted=raw["muted"])
        if isinstance(raw.get("wake_enabled"), bool):
            out = replace(out, wake_enabled=raw["wake_enabled"])
        vol = raw.get("volume")
        if isinstance(vol, int) and not isinstance(vol, bool) and 0 <= vol <= 100:
            out = replace(out, volume=vol)
        return out

    def update(self, **changes: object) -> RuntimeChoices:
        self.current = replace(self.current, **changes)  # type: ignore[arg-type]
        try:
            write_json_atomic(self.path, asdict(self.current))
        except OSError as e:
            log.warning("cannot save %s (%s): the choice holds until restart", self.path, e)
        return self.current
