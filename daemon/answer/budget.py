"""How much the cloud cost today, so the daily cap (`cost.daily_limit`) holds across restarts.

Priced per response by the backend (daemon.answer.realtime.usage); counted here whatever the backend.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

from daemon.system.state_files import write_json_atomic

log = logging.getLogger(__name__)


class DailyCost:
    """Today's cloud spend in USD; resets at local midnight. Persisted in `state_dir` so a restart keeps the
    daily cap (None: counted in memory only, e.g. a client in a test or a benchmark)."""

    FILE_NAME = "daily_cost.json"

    def __init__(self, state_dir: Path | None = None, today: Callable[[], dt.date] = dt.date.today) -> None:
        self.path = Path(state_dir) / self.FILE_NAME if state_dir is not None else None
        self._today = today
        self._date, self._usd = self._read()

    @property
    def spent_today(self) -> float:
        self._roll()
        return self._usd

    def add(self, usd: float) -> None:
        if isinstance(usd, bool) or not isinstance(usd, (int, float)) or not math.isfinite(usd) or usd < 0:
            raise ValueError(f"DailyCost.add({usd!r}): expected a finite amount in USD >= 0")
        self._roll()
        self._usd += float(usd)
        self._write()

    def over(self, limit: float) -> bool:
        """Has today's spend reached `limit` USD? A limit of 0 means no cap."""
        if not math.isfinite(limit) or limit < 0:
            raise ValueError(f"daily limit {limit!r}: expected USD >= 0 (0 = no cap)")
        return limit > 0 and self.spent_today >= limit

    def _roll(self) -> None:
        today = self._today()
        if today != self._date:
            if self._usd:
                log.info("new day: cloud spend of %s ($%.4f) reset", self._date.isoformat(), self._usd)
            self._date, self._usd = today, 0.0

    def _read(self) -> tuple[dt.date, float]:
        today = self._today()
        if self.path is None:
            return today, 0.0
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            day = dt.date.fromisoformat(raw["date"])
            usd = float(raw["usd"])
            if not math.isfinite(usd) or usd < 0:
                raise ValueError(f"usd={usd}")
        except FileNotFoundError:
            return today, 0.0
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.warning("%s is unreadable (%s): counting today's cloud spend from $0", self.path, e)
            return today, 0.0
        return (day, usd) if day == today else (today, 0.0)

    def _write(self) -> None:
        if self.path is None:
            return
        try:
            write_json_atomic(self.path, {"date": self._date.isoformat(), "usd": self._usd})
        except OSError as e:
            log.warning("cannot save today's cloud spend to %s (%s): the daily cap resets on restart", self.path, e)
