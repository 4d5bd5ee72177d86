"""The wake gate on real speech and real room sounds: the same detections as the ungated detector, and no
inference at all while the room is quiet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.audio.frames import INPUT_RATE_HZ, WAKE_STEP_SAMPLES
from daemon.config.settings import WakeSettings
from daemon.listen.gate import WakeGate
from daemon.listen.wake import WakeDetector
from daemon.observe.events import WakeDetected
from tests import noise
from tests.speech import Clip, Speech

SAME_WITHIN = WAKE_STEP_SAMPLES  # ±80 ms


@pytest.fixture(scope="module")
def detector(models_dir: Path) -> WakeDetector:
    return WakeDetector(WakeSettings(), models_dir)


def scores(wake: WakeDetector | WakeGate, clip: Clip) -> list[WakeDetected]:
    wake.reset()
    return [d for frame in clip.frames() for d in wake.process(frame)]


def conversation(speech: Speech) -> Clip:
    """Other speech with three wake phrases (espeak-ng and Piper) and pauses long enough to close the gate."""
    parts = [
        speech.espeak("Did you see the game last night"),
        speech.espeak("hey jarvis"),
        speech.piper("I left the keys on the kitchen table."),
        speech.piper("Hey Jarvis."),
        speech.espeak("We should call grandma this weekend"),
        speech.espeak("hey jarvis", voice="en-gb"),
    ]
    return speech.concat(parts, [1.0, 0.3, 2.5, 0.4, 2.5, 0.3, 2.5])


def noisy(clip: Clip, snr_db: float) -> Clip:
    room = noise.pink_noise(len(clip.pcm) / INPUT_RATE_HZ, -30.0, seed=3)
    return Clip(noise.with_snr(clip.pcm, room, snr_db, noise.voiced_level_dbfs(clip.pcm)), clip.spans)


@pytest.mark.parametrize("snr_db", [None, 10.0], ids=["clean", "10dB-pink-noise"])
def test_the_gate_finds_the_same_wake_words_at_the_same_places(
    detector: WakeDetector, speech: Speech, snr_db: float | None
) -> None:
    clip = conversation(speech)
    if snr_db is not None:
        clip = noisy(clip, snr_db)
    ungated = scores(detector, clip)
    gate = WakeGate(detector, WakeSettings())
    gated = scores(gate, clip)
    assert len(ungated) >= 2, ungated  # the clip really exercises detection
    assert [d.model for d in gated] == [d.model for d in ungated]
    assert all(abs(g.sample - u.sample) <= SAME_WITHIN for g, u in zip(gated, ungated, strict=True)), (gated, ungated)
    assert gate.counters.openings >= (2 if snr_db is None else 1)  # clean: the pauses closed it, preroll re-fed
    assert gate.counters.scored < gate.counters.blocks + gate.counters.openings * 25


@pytest.mark.parametrize(
    "room",
    [
        np.zeros(10 * INPUT_RATE_HZ, dtype=np.int16),
        noise.pink_noise(10, -55.0, seed=1),
        noise.mix(noise.pink_noise(10, -60.0, seed=2), noise.hum(10, -55.0)),
    ],
    ids=["digital-silence", "pink-noise-55dBFS", "fridge-hum"],
)
def test_a_quiet_room_runs_no_inference(detector: WakeDetector, room: np.ndarray) -> None:
    gate = WakeGate(detector, WakeSettings())
    assert scores(gate, Clip(room, ())) == []
    assert gate.counters.blocks > 100
    assert gate.counters.scored == 0
    assert not gate.is_open


def test_a_voice_opens_the_gate_with_the_audio_before_it_and_silence_closes_it(
    detector: WakeDetector, speech: Speech
) -> None:
    gate = WakeGate(detector, WakeSettings(gate_hangover_s=1.0, gate_preroll_s=2.0))
    clip = speech.concat([speech.espeak("hey jarvis")], [3.0, 3.0])
    gate.reset()
    opened_at = closed_at = None
    found: list[WakeDetected] = []
    for frame in clip.frames():
        was_open, scored = gate.is_open, gate.counters.scored
        found += gate.process(frame)
        if gate.is_open and not was_open:
            opened_at = frame.sample
            assert gate.counters.scored - scored == 25  # 2 s of preroll (incl. this block) fed at once
        if was_open and not gate.is_open:
            closed_at = frame.end_sample
    span = clip.spans[0]
    assert opened_at is not None and closed_at is not None
    assert span.start - WAKE_STEP_SAMPLES <= opened_at <= span.start + 0.3 * INPUT_RATE_HZ
    assert span.end + 0.9 * INPUT_RATE_HZ <= closed_at <= span.end + 1.4 * INPUT_RATE_HZ
    assert [d.model for d in found] == ["hey_jarvis"]


def test_a_gap_in_the_input_forgets_the_buffered_audio(detector: WakeDetector, speech: Speech) -> None:
    """After listening (the assistant stops feeding wake), blocks resume later: stale audio is never fed."""
    gate = WakeGate(detector, WakeSettings())
    clip = speech.concat([speech.espeak("hey jarvis")], [1.5, 0.0])
    frames = list(clip.frames())
    gate.reset()
    for frame in frames[:-2]:  # the phrase without its end: no detection yet, gate open
        gate.process(frame)
    gate.reset()  # what the assistant does when it leaves listening
    later = [frame for frame in Clip(np.zeros(3 * INPUT_RATE_HZ, dtype=np.int16), ()).frames(start=10**6)]
    assert [d for f in later for d in gate.process(f)] == []
    assert not gate.is_open
