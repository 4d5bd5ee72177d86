"""Today's cloud spend: persisted across restarts, reset at midnight, never a crash on a bad file."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pytest

from daemon.answer.budget import DailyCost


class FakeDay:
    def __init__(self) -> None:
        self.day = dt.date(2026, 3, 1)

    def __call__(self) -> dt.date:
        return self.day


def test_daily_cost_adds_persists_and_rolls_over_at_midnight(tmp_path: Path) -> None:
    day = FakeDay()
    cost = DailyCost(tmp_path, today=day)
    cost.add(0.25)
    cost.add(0.5)
    assert cost.spent_today == pytest.approx(0.75)
    assert cost.over(0.75) and not cost.over(1.0) and not cost.over(0)
    again = DailyCost(tmp_path, today=day)  # a restart keeps today's spend
    assert again.spent_today == pytest.approx(0.75)
    day.day = dt.date(2026, 3, 2)
    assert again.spent_today == 0.0 and not again.over(0.5)
    again.add(0.1)
    saved = json.loads((tmp_path / DailyCost.FILE_NAME).read_text())
    assert saved == {"date": "2026-03-02", "usd": pytest.approx(0.1)}
    assert DailyCost(tmp_path, today=FakeDay()).spent_today == 0.0  # a stale file is another day's


@pytest.mark.parametrize("content", ["{not json", '{"date": "2026-03-01"}', '{"date": "x", "usd": 1}', "[]"])
def test_corrupt_cost_file_warns_and_starts_at_zero(
    tmp_path: Path, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / DailyCost.FILE_NAME).write_text(content)
    with caplog.at_level(logging.WARNING, logger="daemon.answer.budget"):
        cost = DailyCost(tmp_path, today=FakeDay())
    assert cost.spent_today == 0.0
    assert "unreadable" in caplog.text and "from $0" in caplog.text
    cost.add(0.2)  # and it recovers by overwriting
    assert DailyCost(tmp_path, today=FakeDay()).spent_today == pytest.approx(0.2)


def test_unwritable_state_dir_keeps_counting_in_memory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cost = DailyCost(blocker / "state", today=FakeDay())  # a path under a regular file: cannot be created
    with caplog.at_level(logging.WARNING, logger="daemon.answer.budget"):
        cost.add(0.3)
    assert cost.spent_today == pytest.approx(0.3)
    assert "cannot save today's cloud spend" in caplog.text


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "0.1", True])
def test_bad_amounts_are_refused(tmp_path: Path, bad: object) -> None:
    with pytest.raises(ValueError, match="expected a finite amount in USD >= 0"):
        DailyCost(tmp_path, today=FakeDay()).add(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected USD >= 0"):
        DailyCost(tmp_path, today=FakeDay()).over(-1)
