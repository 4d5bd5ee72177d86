"""Smart Turn v3: our numpy features against transformers' extractor, the real model on real speech, the policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.listen.smart_turn import (
    FEATURES_SHAPE,
    WINDOW_SAMPLES,
    SmartTurn,
    TurnAsk,
    TurnEnd,
    TurnModelError,
    TurnPolicy,
    TurnSettings,
    as_float_audio,
    last_window,
    log_mel_features,
)
from tests.speech import Speech, read_wav, speech_bounds

MODEL = Path("smart-turn") / "smart-turn-v3.2-cpu.onnx"
MS = 16  # samples per millisecond at 16 kHz


@pytest.fixture(scope="module")
def reference() -> object:
    """transformers' extractor built locally (nothing from a model hub), as pipecat constructed it."""
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(chunk_length=8)


def reference_features(extractor: object, pcm: np.ndarray) -> np.ndarray:
    """Exactly pipecat's call before it vendored the extractor: last 8 s left-padded, then these arguments."""
    audio = last_window(as_float_audio(pcm))
    out = extractor(  # type: ignore[operator]
        audio,
        sampling_rate=16_000,
        return_tensors="np",
        padding="max_length",
        max_length=WINDOW_SAMPLES,
        truncation=True,
        do_normalize=True,
    )
    return np.asarray(out.input_features, dtype=np.float32)


@pytest.fixture(scope="module")
def model(models_dir: Path) -> SmartTurn:
    return SmartTurn(models_dir / MODEL)


def pcm_of(path: Path) -> np.ndarray:
    return read_wav(path)[0]


def cut_at_pause(pcm: np.ndarray) -> np.ndarray:
    """The speech before the longest inner pause: "set a timer for, ten minutes." → "set a timer for" with
    the continuing intonation a person has when they stop to think (a TTS fed only "set a timer for" ends
    it like a finished sentence)."""
    first, last = speech_bounds(pcm)
    pcm = pcm[first:last]
    quiet = np.concatenate([[False], np.abs(pcm.astype(np.int32)) < np.abs(pcm).max() * 0.01, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    starts, ends = edges[0::2], edges[1::2]
    longest = int(np.argmax(ends - starts))
    assert ends[longest] - starts[longest] >= 100 * MS, "expected a pause of at least 100 ms at the comma"
    return pcm[: starts[longest]]


def as_heard(speech: Speech, pcm_or_path: Path | np.ndarray) -> np.ndarray:
    """What the model hears when first asked: 0.5 s of room before, the speech, 200 ms of silence after."""
    return speech.concat([pcm_or_path], [0.5, 0.2]).pcm


# --- features ------------------------------------------------------------------------------------------------


def test_features_equal_the_reference_extractor_on_speech_silence_and_short_input(
    reference: object, speech: Speech
) -> None:
    sentence = pcm_of(speech.piper("Turn on the kitchen lights."))
    rng = np.random.default_rng(7)
    cases = {
        "speech": as_heard(speech, speech.espeak("turn on the kitchen lights.")),
        "piper": sentence,
        "longer than 8 s (only the end counts)": np.tile(sentence, 6),
        "loud": np.clip(sentence.astype(np.int32) * 4, -32768, 32767).astype(np.int16),
        "digital silence": np.zeros(16_000, dtype=np.int16),
        "50 ms": sentence[len(sentence) // 2 : len(sentence) // 2 + 800],
        "empty": np.zeros(0, dtype=np.int16),
        "noise": rng.normal(0, 2000, 3 * 16_000).astype(np.int16),
    }
    for name, pcm in cases.items():
        ours = log_mel_features(pcm)
        theirs = reference_features(reference, pcm)
        assert ours.shape == theirs.shape == FEATURES_SHAPE, name
        assert ours.dtype == np.float32, name
        assert float(np.abs(ours - theirs).max()) < 1e-4, name
    as_bytes = log_mel_features(sentence.tobytes())
    assert np.array_equal(as_bytes, log_mel_features(sentence)), "PCM16 bytes and int16 samples are the same input"
    assert np.array_equal(log_mel_features(sentence.astype(np.float32) / 32768), as_bytes), "floats in [-1, 1)"


def test_features_refuse_multichannel_audio() -> None:
    with pytest.raises(ValueError, match="expected mono audio"):
        log_mel_features(np.zeros((2, 1600), dtype=np.int16))


# --- the model on real speech -------------------------------------------------------------------------------


def test_a_complete_request_scores_as_complete(model: SmartTurn, speech: Speech) -> None:
    # Measured: espeak-ng 0.91 (160 wpm) / 0.98 (200 wpm); Piper 0.98 (length_scale 1.0) / 0.95 (1.2).
    for path in (
        speech.espeak("turn on the kitchen lights."),
        speech.espeak("turn on the kitchen lights.", speed=200),
        speech.piper("Turn on the kitchen lights."),
        speech.piper("Turn on the kitchen lights.", length_scale=1.2),
    ):
        judgement = model.judge(as_heard(speech, path))
        assert judgement.probability > 0.5, path.name
        assert judgement.inference_ms > 0 and judgement.features_ms > 0


def test_a_request_cut_mid_sentence_scores_lower(model: SmartTurn, speech: Speech) -> None:
    # Measured with Piper: "set a timer for," 0.055 (length_scale 1.0) / 0.058 (1.2) against 0.97 finished.
    # espeak-ng's robotic prosody ends "set a timer for" like a sentence (0.96–0.98), so its unfinished case
    # is "what is the weather in" (0.06 at 130 wpm, 0.17 at 200; 0.49 at 160, too close to call).
    cases = [
        (speech.piper("Set a timer for, ten minutes."), speech.piper("Set a timer for ten minutes.")),
        (
            speech.piper("Set a timer for, ten minutes.", length_scale=1.2),
            speech.piper("Set a timer for ten minutes.", length_scale=1.2),
        ),
        (speech.espeak("what is the weather in, paris?", speed=130), speech.espeak("what is the weather in paris?")),
    ]
    for hesitant, finished in cases:
        unfinished = model.predict(as_heard(speech, cut_at_pause(pcm_of(hesitant))))
        complete = model.predict(as_heard(speech, finished))
        assert unfinished < 0.5, f"{hesitant.name}: {unfinished:.3f}"
        assert complete - unfinished > 0.4, f"{finished.name}: {complete:.3f} vs {unfinished:.3f}"


def test_inputs_longer_than_8_s_and_bytes_are_accepted(model: SmartTurn, speech: Speech) -> None:
    pcm = as_heard(speech, speech.piper("Turn on the kitchen lights."))
    long = np.concatenate([np.tile(pcm, 8), pcm])
    assert model.predict(long.tobytes()) == pytest.approx(model.predict(long))
    assert 0.0 <= model.predict(np.zeros(0, dtype=np.int16)) <= 1.0


# --- bad model files ----------------------------------------------------------------------------------------


def test_a_missing_model_names_the_path_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / MODEL
    with pytest.raises(TurnModelError, match="run scripts/fetch-models") as err:
        SmartTurn(path)
    assert str(path) in str(err.value) and "missing" in str(err.value)


def test_a_corrupt_model_names_the_path_and_the_fix(tmp_path: Path, models_dir: Path) -> None:
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx model" * 100)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes((models_dir / MODEL).read_bytes()[:100_000])
    for path in (garbage, truncated):
        with pytest.raises(TurnModelError, match="corrupt or not an ONNX model") as err:
            SmartTurn(path)
        assert str(path) in str(err.value) and "run scripts/fetch-models" in str(err.value)


def test_another_onnx_model_is_refused(tmp_path: Path, models_dir: Path) -> None:
    other = models_dir / "openwakeword" / "melspectrogram.onnx"
    with pytest.raises(TurnModelError, match="not Smart Turn v3") as err:
        SmartTurn(other)
    assert str(other) in str(err.value)


# --- the policy ---------------------------------------------------------------------------------------------

SETTINGS = TurnSettings(turn_min_silence_ms=200, turn_recheck_ms=250, turn_max_silence_ms=1500, turn_threshold=0.5)
FRAME = 30 * MS


def drive(policy: TurnPolicy, answers: list[float], start: int = 0) -> tuple[list[int], TurnEnd]:
    """Feed 30 ms frames of silence, answering each question at once with the next probability."""
    asked: list[int] = []
    silence = start
    while True:
        silence += FRAME
        step = policy.silence(silence)
        if isinstance(step, TurnEnd):
            return asked, step
        if isinstance(step, TurnAsk):
            asked.append(step.silence_samples // MS)
            end = policy.judged(step, answers[len(asked) - 1] if len(asked) <= len(answers) else 0.1)
            if end is not None:
                return asked, end


def test_policy_asks_after_the_first_short_silence_and_a_complete_answer_ends_at_once() -> None:
    asked, end = drive(TurnPolicy(SETTINGS), [0.9])
    assert asked == [210]  # the first 30 ms frame at or past 200 ms
    assert end == TurnEnd("model", 210 * MS, 0.9)


def test_policy_keeps_listening_while_unfinished_and_asks_again_as_the_silence_grows() -> None:
    asked, end = drive(TurnPolicy(SETTINGS), [0.2, 0.3, 0.8])
    assert asked == [210, 480, 750]  # every 250 ms more, on frame boundaries
    assert end == TurnEnd("model", 750 * MS, 0.8)


def test_policy_with_recheck_0_asks_once_per_pause_and_the_ceiling_ends_it() -> None:
    once = TurnSettings(turn_min_silence_ms=200, turn_recheck_ms=0, turn_max_silence_ms=1500)
    asked, end = drive(TurnPolicy(once), [0.2, 0.9])
    assert asked == [210], "an unfinished answer is not asked again in the same pause"
    assert end == TurnEnd("silence", 1500 * MS, 0.2)
    policy = TurnPolicy(once)
    ask = policy.silence(210 * MS)
    assert isinstance(ask, TurnAsk) and policy.judged(ask, 0.2) is None
    policy.speech()  # the person goes on: the next pause is asked about again
    assert isinstance(policy.silence(210 * MS), TurnAsk)


def test_policy_ceiling_ends_with_reason_silence() -> None:
    asked, end = drive(TurnPolicy(SETTINGS), [])
    assert asked == [210, 480, 750, 1020, 1290]
    assert end.reason == "silence"
    assert end.silence_samples == 1500 * MS
    assert end.probability == 0.1, "the last answer is reported"


def test_policy_one_question_at_a_time_and_stale_answers_are_ignored() -> None:
    policy = TurnPolicy(SETTINGS)
    assert policy.silence(100 * MS) is None
    ask = policy.silence(200 * MS)
    assert isinstance(ask, TurnAsk)
    assert policy.silence(600 * MS) is None, "still waiting for the first answer: no second question"
    assert policy.judged(ask, 0.1) is None
    late = policy.silence(630 * MS)
    assert isinstance(late, TurnAsk), "the answer came late: ask again at once"
    policy.speech()  # the person goes on talking before the answer arrives
    assert policy.judged(late, 0.99) is None, "an answer about an earlier silence does not end the turn"
    assert policy.silence(150 * MS) is None
    fresh = policy.silence(200 * MS)
    assert isinstance(fresh, TurnAsk)
    assert policy.judged(fresh, None) is None, "a failed model run keeps listening"
    assert policy.silence(1500 * MS) == TurnEnd("silence", 1500 * MS, None)


def test_policy_threshold_is_exclusive_and_settings_are_checked() -> None:
    policy = TurnPolicy(TurnSettings(turn_threshold=0.7))
    ask = policy.silence(200 * MS)
    assert isinstance(ask, TurnAsk)
    assert policy.judged(ask, 0.7) is None
    with pytest.raises(ValueError, match="turn_min_silence_ms = 2000"):
        TurnSettings(turn_min_silence_ms=2000)
    with pytest.raises(ValueError, match="turn_recheck_ms = -1"):
        TurnSettings(turn_recheck_ms=-1)
    with pytest.raises(ValueError, match="turn_threshold = 1.5"):
        TurnSettings(turn_threshold=1.5)


def test_an_unlikely_sentence_end_raises_the_bar_or_holds() -> None:
    """Words that rarely end a sentence (the language model's P(end) below turn_min_end_probability): the
    model must be surer (turn_unlikely_end_threshold: 0.95 by default), and at 1.0 nothing it says ends it."""
    raised = TurnPolicy(TurnSettings())
    ask = raised.silence(200 * MS)
    assert isinstance(ask, TurnAsk) and raised.judged(ask, 0.9, unlikely_end=True) is None
    raised.speech()
    ask = raised.silence(200 * MS)
    assert isinstance(ask, TurnAsk) and raised.judged(ask, 0.96, unlikely_end=True) is not None
    held = TurnPolicy(TurnSettings(turn_unlikely_end_threshold=1.0))
    ask = held.silence(200 * MS)
    assert isinstance(ask, TurnAsk) and held.judged(ask, 1.0, unlikely_end=True) is None
    lower = TurnPolicy(TurnSettings(turn_threshold=0.8, turn_unlikely_end_threshold=0.3))
    ask = lower.silence(200 * MS)
    assert isinstance(ask, TurnAsk) and lower.judged(ask, 0.5, unlikely_end=True) is None, "never below turn_threshold"
    with pytest.raises(ValueError, match="turn_unlikely_end_threshold = 1.5"):
        TurnSettings(turn_unlikely_end_threshold=1.5)
