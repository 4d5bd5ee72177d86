"""Endpointing on real speech: webrtcvad finds where the user stops, within ±60 ms of the true end."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.audio.frames import INPUT_RATE_HZ, AudioFrame
from daemon.config.settings import EndpointSettings, WakeSettings
from daemon.listen.endpoint import Endpointer, EndpointEvent, VadState
from daemon.listen.wake import WakeDetector
from daemon.observe.events import NoSpeech, SpeechEnded, SpeechStarted
from tests.speech import Clip, Speech

TOLERANCE = 60 * INPUT_RATE_HZ // 1000

REQUESTS = [
    "What's the weather like tomorrow?",
    "Turn on the kitchen lights, please.",
    "Set a timer for ten minutes.",
    "How far away is the moon?",
    "Play some jazz in the living room.",
    "Remind me to water the plants.",
]


def endpointer(**kwargs: Any) -> Endpointer:
    return Endpointer(EndpointSettings(**kwargs))


def feed(ep: Endpointer, frames: Iterable[AudioFrame]) -> list[EndpointEvent]:
    return [e for frame in frames for e in ep.process(frame)]


def odd_frames(clip: Clip, size: int) -> Iterable[AudioFrame]:
    for at in range(0, len(clip.pcm), size):
        yield AudioFrame(clip.pcm[at : at + size].tobytes(), at)


@pytest.fixture(scope="module")
def wake(models_dir: Path) -> WakeDetector:
    return WakeDetector(WakeSettings(), models_dir)


def wake_point(wake: WakeDetector, clip: Clip) -> int:
    """Where the daemon would arm the endpointer: the frame the real wake detector fired on."""
    wake.reset()
    found = [d for frame in clip.frames() for d in wake.process(frame)]
    assert found, "the wake phrase was not detected"
    return found[0].sample


@pytest.mark.parametrize("engine", ["espeak", "piper"])
def test_speech_end_within_60_ms_after_a_wake_phrase(speech: Speech, wake: WakeDetector, engine: str) -> None:
    make = speech.espeak if engine == "espeak" else speech.piper
    wake_phrase = make("hey jarvis")
    ep = endpointer()
    for text in REQUESTS:
        clip = speech.concat([wake_phrase, make(text)], [1.0, 0.4, 1.5])
        ep.start(wake_point(wake, clip))
        events = feed(ep, clip.frames())
        said = clip.spans[1]
        assert [type(e) for e in events] == [SpeechStarted, SpeechEnded], (text, events)
        started, ended = events
        assert abs(started.sample - said.start) <= TOLERANCE, (text, started, said)
        assert abs(ended.sample - said.end) <= TOLERANCE, (text, ended, said)
        assert isinstance(ended, SpeechEnded) and not ended.timed_out
        assert not ep.armed


def test_a_pause_shorter_than_end_silence_does_not_end_the_utterance(speech: Speech) -> None:
    clip = speech.concat([speech.piper("Add milk to the list."), speech.piper("And also some bread.")], [0.5, 0.4, 1.5])
    ep = endpointer(end_silence_ms=700)
    ep.start(0)
    events = feed(ep, clip.frames())
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    assert abs(events[1].sample - clip.spans[1].end) <= TOLERANCE


def test_frame_size_does_not_change_the_result(speech: Speech) -> None:
    """30 ms sub-frames are carried across capture frames with exact sample offsets."""
    clip = speech.concat([speech.espeak("Set a timer for ten minutes.")], [0.7, 1.2])
    results = []
    for size in (1280, 1000, 333, 4800):
        ep = endpointer()
        ep.start(160)
        results.append(feed(ep, odd_frames(clip, size)))
    assert all(r == results[0] for r in results), results
    assert [type(e) for e in results[0]] == [SpeechStarted, SpeechEnded]


def test_no_speech_after_the_start_timeout(speech: Speech) -> None:
    silence = speech.concat([], [4.0], noise_dbfs=-60.0)
    ep = endpointer(start_timeout_s=2.0)
    ep.start(8000)
    events = feed(ep, silence.frames())
    assert len(events) == 1 and isinstance(events[0], NoSpeech)
    assert abs(events[0].sample - (8000 + 2 * INPUT_RATE_HZ)) <= 480
    assert ep.state is VadState.IDLE


def test_long_speech_is_cut_at_max_utterance(speech: Speech) -> None:
    text = "I would like to hear a long story about dragons, castles and brave knights who travel far."
    clip = speech.concat([speech.piper(text)], [0.5, 1.0])
    assert clip.spans[0].end - clip.spans[0].start > 3 * INPUT_RATE_HZ
    ep = endpointer(max_utterance_s=2.0)
    ep.start(0)
    events = feed(ep, clip.frames())
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    started, ended = events
    assert isinstance(ended, SpeechEnded) and ended.timed_out
    assert abs(ended.sample - (started.sample + 2 * INPUT_RATE_HZ)) <= 480


def test_disarmed_until_start_and_after_the_end(speech: Speech) -> None:
    utterance = speech.espeak("Play some music.")
    clip = speech.concat([utterance, utterance], [0.5, 2.0, 1.0])
    ep = endpointer()
    assert feed(ep, clip.frames()) == [], "not armed: nothing is reported"
    ep.start(0)
    events = feed(ep, clip.frames())
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded], "the second utterance is ignored"
    second = clip.spans[1].start - 2000
    ep.start(second)
    events = feed(ep, clip.frames())
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    assert abs(events[1].sample - clip.spans[1].end) <= TOLERANCE


def test_speech_start_ignores_a_click() -> None:
    click = np.zeros(INPUT_RATE_HZ * 2, dtype=np.int16)
    click[8000:8080] = 20000
    ep = endpointer(start_timeout_s=1.5)
    ep.start(0)
    events = feed(ep, Clip(click, ()).frames())
    assert [type(e) for e in events] == [NoSpeech]


def test_bad_start_and_stop() -> None:
    ep = endpointer()
    with pytest.raises(ValueError, match="start sample must be >= 0"):
        ep.start(-1)
    ep.start(0)
    assert ep.armed
    ep.stop()
    assert not ep.armed and ep.state is VadState.IDLE
