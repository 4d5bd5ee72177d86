"""Wake word on real speech: the real openWakeWord ONNX models on espeak-ng and Piper voices."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from daemon.audio.frames import INPUT_RATE_HZ, WAKE_STEP_SAMPLES
from daemon.config.models import ModelError
from daemon.config.settings import WakeSettings
from daemon.listen.wake import WakeDetector
from daemon.observe.events import WakeDetected
from tests.speech import Clip, Speech

LATE_S = 0.5
"""openWakeWord fires as the phrase ends; a detection this long after the phrase is still 'on time'."""

OTHER_SENTENCES = [
    "What's the weather like tomorrow morning?",
    "Turn on the kitchen lights, please.",
    "Set a timer for ten minutes.",
    "How far away is the moon from the earth?",
    "Play some jazz music in the living room.",
    "Remind me to call my sister at six o'clock.",
    "The quick brown fox jumps over the lazy dog.",
    "I think we should paint the fence green this summer.",
    "Could you add eggs, milk and bread to the shopping list?",
    "My flight to Chicago leaves at half past nine.",
    "Harvey and Jasmine travelled to Alaska last year.",
    "Please lower the volume a little bit.",
    "Which team won the football game yesterday evening?",
    "The library closes early on Sundays.",
    "A microphone picks up every sound in the room.",
    "Hello there, how are you doing today?",
]


def detector(models_dir: Path, models: list[Any], **kwargs: Any) -> WakeDetector:
    return WakeDetector(WakeSettings.model_validate({"models": models, **kwargs}), models_dir)


def run(det: WakeDetector, clip: Clip, strict: bool = False) -> list[WakeDetected]:
    return [d for frame in clip.frames() for d in det.process(frame, strict=strict)]


def on_time(d: WakeDetected, clip: Clip, part: int = 0) -> bool:
    span = clip.spans[part]
    return span.start <= d.sample <= span.end + LATE_S * INPUT_RATE_HZ


def test_hey_jarvis_from_espeak_is_detected_at_the_phrase(models_dir: Path, speech: Speech) -> None:
    clip = speech.concat([speech.espeak("hey jarvis")], [1.0, 1.5])
    found = run(detector(models_dir, ["hey_jarvis"]), clip)
    assert [d.model for d in found] == ["hey_jarvis"]
    assert found[0].score >= 0.5  # fires on the first frame over the threshold
    assert on_time(found[0], clip), (found, clip.spans)


@pytest.mark.parametrize(("text", "model"), [("Hey Mycroft.", "hey_mycroft"), ("Alexa.", "alexa")])
def test_piper_wake_phrases_are_detected_by_their_own_model(
    models_dir: Path, speech: Speech, text: str, model: str
) -> None:
    det = detector(models_dir, ["hey_jarvis", "alexa", "hey_mycroft"])
    assert det.names == ["hey_jarvis", "alexa", "hey_mycroft"]
    clip = speech.concat([speech.piper(text)], [1.0, 1.5])
    found = run(det, clip)
    assert [d.model for d in found] == [model]
    assert on_time(found[0], clip), (found, clip.spans)


def test_a_minute_of_other_speech_wakes_nothing(models_dir: Path, speech: Speech) -> None:
    parts = []
    for i, text in enumerate(OTHER_SENTENCES):
        parts.append(speech.piper(text, length_scale=(0.9, 1.0, 1.15)[i % 3]))
        voice, speed = (("en-us", 150), ("en-gb", 175), ("en-us+f3", 140))[i % 3]
        parts.append(speech.espeak(text, voice=voice, speed=speed))
    clip = speech.concat(parts, [0.3] * len(parts) + [1.0], noise_dbfs=-60.0)
    speech_s = sum(s.end - s.start for s in clip.spans) / INPUT_RATE_HZ
    assert speech_s >= 60.0, f"only {speech_s:.1f} s of speech: add sentences"
    found = run(detector(models_dir, ["hey_jarvis", "alexa", "hey_mycroft", "hey_rhasspy"]), clip)
    assert found == []


def test_one_phrase_gives_one_detection_within_the_refractory_time(models_dir: Path, speech: Speech) -> None:
    phrase = speech.piper("Hey Jarvis.")
    twice = speech.concat([phrase, phrase], [1.0, 1.0, 1.5])
    # Without a refractory time the scores stay high for several frames of one phrase.
    assert len(run(detector(models_dir, ["hey_jarvis"], refractory_s=0.0), twice)) > 2
    assert len(run(detector(models_dir, ["hey_jarvis"], refractory_s=3.0), twice)) == 1
    found = run(detector(models_dir, ["hey_jarvis"], refractory_s=1.0), twice)
    assert len(found) == 2
    assert on_time(found[0], twice, 0)
    assert on_time(found[1], twice, 1)


def test_trigger_level_needs_consecutive_frames(models_dir: Path, speech: Speech) -> None:
    clip = speech.concat([speech.piper("Hey Jarvis.")], [1.0, 1.5])
    first = run(detector(models_dir, ["hey_jarvis"]), clip)
    third = run(detector(models_dir, ["hey_jarvis"], trigger_level=3), clip)
    assert len(first) == len(third) == 1
    assert third[0].sample == first[0].sample + 2 * WAKE_STEP_SAMPLES
    # The per-model table wins over the wake-level default; one phrase is far shorter than 20 frames.
    patient = detector(models_dir, [{"name": "hey_jarvis", "trigger_level": 20}], trigger_level=3)
    assert run(patient, clip) == []


def test_strict_threshold_while_answering(models_dir: Path, speech: Speech) -> None:
    weak = speech.concat([speech.espeak("alexa")], [1.0, 1.5])  # espeak's "alexa" scores ~0.6-0.7
    strong = speech.concat([speech.piper("Alexa.")], [1.0, 1.5])
    det = detector(models_dir, ["alexa"], responding_threshold=0.8)
    assert [d.model for d in run(det, weak)] == ["alexa"]
    assert run(det, weak, strict=True) == []
    assert [d.model for d in run(det, strong, strict=True)] == ["alexa"]


def test_per_model_threshold_overrides_the_default(models_dir: Path, speech: Speech) -> None:
    clip = speech.concat([speech.espeak("alexa"), speech.espeak("hey jarvis")], [1.0, 1.5, 1.5])
    det = detector(models_dir, [{"name": "alexa", "threshold": 0.9}, "hey_jarvis"], threshold=0.5)
    assert [d.model for d in run(det, clip)] == ["hey_jarvis"]


def test_reset_forgets_what_was_heard(models_dir: Path, speech: Speech) -> None:
    """Like after our own playback: audio before reset() cannot complete a wake phrase."""
    clip = speech.concat([speech.piper("Hey Jarvis.")], [1.0, 1.5])
    det = detector(models_dir, ["hey_jarvis"])
    assert len(run(det, clip)) == 1
    det.reset()
    middle = (clip.spans[0].start + clip.spans[0].end) // 2
    found = []
    for frame in clip.frames():
        if frame.sample <= middle < frame.end_sample:
            det.reset()
        found += det.process(frame)
    assert found == []


def test_custom_model_path_uses_the_file_name_as_label(models_dir: Path, speech: Speech, tmp_path: Path) -> None:
    custom = tmp_path / "my_word.onnx"
    shutil.copy(models_dir / "openwakeword" / "hey_jarvis_v0.1.onnx", custom)
    det = detector(models_dir, [str(custom)])
    assert det.names == ["my_word"]
    clip = speech.concat([speech.espeak("hey jarvis")], [1.0, 1.5])
    assert [d.model for d in run(det, clip)] == ["my_word"]


def test_missing_model_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        WakeDetector(WakeSettings(), tmp_path)
    assert str(tmp_path / "openwakeword" / "hey_jarvis_v0.1.onnx") in str(err.value)
    assert "scripts/fetch-models" in str(err.value)


def test_missing_custom_model_and_duplicates_are_refused(models_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nowhere\.onnx.*check wake\.models"):
        detector(models_dir, [str(tmp_path / "nowhere.onnx")])
    with pytest.raises(ModelError, match="twice"):
        detector(models_dir, ["alexa", "alexa"])


def test_corrupt_model_file_is_a_model_error(models_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(ModelError, match=r"broken\.onnx.*fetch-models"):
        detector(models_dir, [str(bad)])
