"""Wake arbitration: three speakers on one real Mosquitto hear one "hey jarvis"; only the loudest answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.core.arbitration import Claim, rank
from tests.arbitration_rig import Speaker, speakers, trial, utterance
from tests.fixtures_mqtt import Broker
from tests.speech import Speech


@pytest.fixture
def three() -> Iterator[list[Speaker]]:
    group = speakers(3)
    try:
        yield group
    finally:
        for spk in group:
            spk.server.stop()


def test_the_loudest_claim_wins_then_the_score_then_the_smaller_device_id() -> None:
    claims = [Claim("b", -30.0, 0.9, 0), Claim("a", -30.0, 0.9, 0), Claim("c", -24.0, 0.6, 0), Claim("d", -30, 0.95, 0)]
    assert [c.device for c in sorted(claims, key=rank)] == ["c", "d", "a", "b"]
    assert Claim.decode(claims[0].encode()) == Claim("b", -30.0, 0.9, 0)
    with pytest.raises(ValueError, match="expected JSON with device, level_dbfs, score, t"):
        Claim.decode(b'{"device": "x"}')


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", [1, 2])
async def test_three_speakers_one_answer_from_the_loudest(
    tmp_path: Path, models_dir: Path, speech: Speech, mosquitto: Broker, three: list[Speaker], seed: int
) -> None:
    await trial(tmp_path, models_dir, utterance(speech), three, mosquitto.port, seed=seed)
    answered = [s for s in three if s.answered]
    assert [s.gain_db for s in answered] == [0.0], [(s.device, s.gain_db, s.run and s.run.states()) for s in three]
    winner = answered[0]
    assert winner.appends > 0 and winner.server.record.commits
    for loser in (s for s in three if s is not winner):
        assert loser.run is not None
        assert loser.appends == 0 and loser.server.record.connections == 0
        assert loser.run.states() == ["arbitrating", "idle"]
        assert not loser.run.events("playback_started")
        assert loser.run.first("arbitration")["winner"] == winner.device
    assert winner.run is not None and winner.run.first("arbitration")["won"] is True


@pytest.mark.asyncio
async def test_with_the_broker_down_each_speaker_answers_alone(
    tmp_path: Path, models_dir: Path, speech: Speech, mosquitto: Broker, three: list[Speaker]
) -> None:
    mosquitto.stop()
    # arbitration configured, broker gone: nobody to claim against, so nobody waits for anybody
    await trial(tmp_path, models_dir, utterance(speech), three, mosquitto.port, wait_connected=False)
    assert all(s.answered and s.appends > 0 for s in three), [(s.device, s.run and s.run.states()) for s in three]
    assert all(s.run is not None and s.run.first("arbitration")["won"] for s in three)
