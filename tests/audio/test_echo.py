"""Echo cancellation: the reference ring, the alignment, the auto rule, and AEC3 on a simulated room.

Real parts throughout: the real AEC3 (pywebrtc-audio), real Piper speech as the answer, real openWakeWord.
The room is simulated here (a delay and a reverberant tail); tests/audio/test_echo_live.py does it on the
PulseAudio rig with a real echo path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.audio.echo import BLOCK_SAMPLES, EchoCanceller, FarEnd, device_cancels_echo, wanted
from daemon.audio.frames import FRAME_SAMPLES, INPUT_RATE_HZ, WAKE_STEP_SAMPLES, AudioFrame
from daemon.config.settings import WakeSettings
from daemon.listen.wake import WakeDetector
from tests.speech import Speech, read_wav

RATE = INPUT_RATE_HZ


def _room(signal: np.ndarray, delay_ms: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    d, n = delay_ms * RATE // 1000, 2400
    ir = np.zeros(d + n)
    ir[d] = 1.0
    ir[d:] += 0.3 * rng.standard_normal(n) * np.exp(-np.arange(n) / 480)
    return np.convolve(signal.astype(np.float64), ir)[: len(signal)] + 3.0 * rng.standard_normal(len(signal))


def _run(aec: EchoCanceller, ref: FarEnd, far: np.ndarray, mic: np.ndarray, clock_error_s: float) -> np.ndarray:
    """AEC3's output of `_run_both`."""
    return _run_both(aec, ref, far, mic, clock_error_s)[0]


def _run_both(
    aec: EchoCanceller, ref: FarEnd, far: np.ndarray, mic: np.ndarray, clock_error_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Play `far` and capture `mic` frame by frame on a virtual clock; the reference is handed to the
    "device" 100 ms before it plays, and the capture clock is `clock_error_s` off (a device buffer nobody
    reported). Both outputs: AEC3's and the linear canceller's."""
    out, linear = np.zeros_like(mic), np.zeros_like(mic)
    t0, ahead = 100.0, RATE // 10
    for i in range(0, len(mic) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        j = i + ahead if i else 0
        block = far[j : i + ahead + FRAME_SAMPLES]
        ref.push(block.tobytes(), t0 + (j - ahead) / RATE, latency_s=ahead / RATE)
        aec.captured(i + FRAME_SAMPLES, t0 + (i + FRAME_SAMPLES) / RATE - clock_error_s)
        cleaned = aec.process(mic[i : i + FRAME_SAMPLES].tobytes(), i)
        out[i : i + FRAME_SAMPLES] = np.frombuffer(cleaned.pcm, np.int16)
        assert cleaned.linear is not None, "libspeexdsp1 is part of the test rig (scripts/bootstrap)"
        linear[i : i + FRAME_SAMPLES] = np.frombuffer(cleaned.linear, np.int16)
    return out, linear


def _wakes_over_answer(models_dir: Path, out: np.ndarray, linear: np.ndarray | None) -> list[int]:
    """Samples at which the detector fires, fed as the assistant feeds it while an answer plays."""
    det = WakeDetector(WakeSettings(), models_dir)
    found = []
    for i in range(0, len(out) - WAKE_STEP_SAMPLES + 1, WAKE_STEP_SAMPLES):
        step = slice(i, i + WAKE_STEP_SAMPLES)
        frame = AudioFrame(out[step].tobytes(), i, None if linear is None else linear[step].tobytes())
        found += [d.sample for d in det.process(frame, strict=True, echo_cancelled=True)]
    return found


def _erle_db(mic: np.ndarray, out: np.ndarray) -> float:
    p_in = np.mean(mic.astype(np.float64) ** 2)
    p_out = max(np.mean(out.astype(np.float64) ** 2), 1e-6)
    return float(10 * np.log10(p_in / p_out))


@pytest.fixture(scope="module")
def answer(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> np.ndarray:
    speech = Speech(tmp_path_factory.mktemp("echo-speech"), models_dir)
    texts = (
        "The weather tomorrow will be sunny with a high of twenty two degrees and light winds from the west.",
        "Your next meeting is at three o'clock with the design team, in the small conference room.",
    )
    return np.concatenate([read_wav(speech.piper(t))[0] for t in texts])


def test_the_reference_is_read_back_by_play_time_with_silence_where_nothing_was_played() -> None:
    ref = FarEnd(ring_s=1.0)
    ref.open(RATE)
    ramp = np.arange(1, 1601, dtype=np.int16)
    ref.push(ramp.tobytes(), now_s=10.0, latency_s=0.05)  # reaches the speaker at 10.05 s
    got = ref.read(10.05 + 100 / RATE, 200)
    assert got.tolist() == ramp[100:300].tolist()
    before = ref.read(10.05 - 50 / RATE, 100)  # half before anything played
    assert before[:50].tolist() == [0] * 50 and before[50:].tolist() == ramp[:50].tolist()
    assert not ref.read(20.0, 10).any()  # the future: nothing yet


def test_a_late_callback_moves_the_reference_clock_but_an_early_one_does_not() -> None:
    ref = FarEnd(ring_s=1.0)
    ref.open(RATE)
    one = np.full(160, 7, dtype=np.int16)
    ref.push(one.tobytes(), now_s=1.0)
    ref.push(one.tobytes(), now_s=1.0)  # a burst: the second block plays after the first, not at 1.0 s
    assert ref.read(1.0 + 160 / RATE, 160).tolist() == [7] * 160
    ref.push((one * 2).tobytes(), now_s=2.0)  # an underrun: 1 s of nothing, then this block plays at 2.0 s
    assert ref.read(2.0, 160).tolist() == [14] * 160


def test_only_whole_10_ms_blocks_are_accepted() -> None:
    aec = EchoCanceller(FarEnd())
    aec.start_stream()
    with pytest.raises(ValueError, match="10 ms"):
        aec.process(bytes(2 * (BLOCK_SAMPLES + 1)), 0)


@pytest.mark.parametrize("clock_error_ms", [0, 120, -150])
def test_aec3_removes_the_echo_even_when_the_clocks_are_off(answer: np.ndarray, clock_error_ms: int) -> None:
    """The echo comes 60 ms late through a reverberant room; the capture clock is off by up to 150 ms
    either way (too early: the echo would precede its reference; too late: the reference would not be
    played yet — the delay estimate must move it both times)."""
    mic = np.clip(_room(answer, 60), -32768, 32767).astype(np.int16)
    ref = FarEnd()
    ref.open(RATE)
    aec = EchoCanceller(ref)
    aec.start_stream()
    out = _run(aec, ref, answer, mic, clock_error_ms / 1000)
    steady = slice(3 * RATE, len(out))
    assert _erle_db(mic[steady], out[steady]) >= 25
    assert aec.lag_s is not None and 0.0 <= aec.lag_s <= 0.3


def test_speech_in_the_room_without_any_playback_passes_through(answer: np.ndarray) -> None:
    ref = FarEnd()
    ref.open(RATE)
    aec = EchoCanceller(ref)
    aec.start_stream()
    silence = np.zeros_like(answer)
    out = _run(aec, ref, silence, answer, 0.0)
    steady = slice(RATE, len(out))
    assert abs(_erle_db(answer[steady], out[steady])) < 3  # what the user says is not removed


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Speech:
    return Speech(tmp_path_factory.mktemp("echo-barge-in"), models_dir)


def test_hey_jarvis_spoken_over_a_louder_answer_interrupts_it(
    answer: np.ndarray, speech: Speech, models_dir: Path
) -> None:
    """The echo is 6 dB louder than the user. AEC3 alone suppresses the user along with the echo; the
    linear canceller's output keeps the voice, and AEC3 still hears someone, so the wake word counts."""
    wake = read_wav(speech.espeak("Hey Jarvis"))[0].astype(np.float64)
    # the first answer lets the filters learn the room; the user speaks 3 s into the second
    far = np.concatenate([answer, answer, np.zeros(RATE, dtype=np.int16)])
    echo = _room(far, 60)
    at = len(answer) + 3 * RATE
    user = np.zeros_like(echo)
    level = np.sqrt(np.mean(echo[len(answer) : 2 * len(answer)] ** 2))
    user[at : at + len(wake)] = wake * level / np.sqrt(np.mean(wake[np.abs(wake) > 300] ** 2)) / 2
    mic = np.clip(echo + user, -32768, 32767).astype(np.int16)
    ref = FarEnd(ring_s=8.0)
    ref.open(RATE)
    aec = EchoCanceller(ref)
    aec.start_stream()
    out, linear = _run_both(aec, ref, far, mic, 0.0)
    heard = _wakes_over_answer(models_dir, out, linear)
    assert any(at <= s <= at + len(wake) + RATE for s in heard), heard
    assert _wakes_over_answer(models_dir, out, None) == []  # what AEC3 alone left of the user


def test_an_answer_that_says_hey_jarvis_itself_does_not_wake_the_speaker(
    answer: np.ndarray, speech: Speech, models_dir: Path
) -> None:
    """The answer quotes the wake word 2 s into it, before the linear filter has learned the room: its output
    still holds enough of that echo to fire, but AEC3's output is silent, so nobody in the room said it."""
    quote = read_wav(speech.piper("To wake me, just say: hey Jarvis. Hey Jarvis!"))[0]
    far = np.concatenate([answer[: 2 * RATE], quote, answer[: 2 * RATE]])
    mic = np.clip(_room(far, 60), -32768, 32767).astype(np.int16)
    ref = FarEnd(ring_s=8.0)
    ref.open(RATE)
    aec = EchoCanceller(ref)
    aec.start_stream()
    out, linear = _run_both(aec, ref, far, mic, 0.0)
    assert _wakes_over_answer(models_dir, out, linear) == []
    assert _wakes_over_answer(models_dir, linear, None) != []  # the linear output alone would have woken it


def test_auto_leaves_devices_that_cancel_echo_themselves_alone() -> None:
    assert device_cancels_echo("default", "Jabra SPEAK 510 USB: Audio (hw:1,0)")
    assert device_cancels_echo("echo-cancel-source")
    assert device_cancels_echo("ReSpeaker 4 Mic Array (UAC1.0)")
    assert not device_cancels_echo("default", "USB PnP Sound Device: Audio (hw:1,0)")
    assert wanted("auto", "default", "USB PnP Sound Device")
    assert not wanted("auto", "default", "eMeet M0 speakerphone")
    assert wanted("on", "Jabra SPEAK 510") and not wanted("off", "USB PnP Sound Device")


def test_with_echo_cancelled_the_wake_threshold_while_answering_is_the_normal_one(models_dir: Path) -> None:
    det = WakeDetector(WakeSettings(threshold=0.5, responding_threshold=0.8), models_dir)
    assert det.threshold(0.5, strict=True, echo_cancelled=True) == 0.5
    assert det.threshold(0.5, strict=True, echo_cancelled=False) == 0.8
    assert det.threshold(0.5, strict=False, echo_cancelled=False) == 0.5
    tuned = WakeDetector(WakeSettings(responding_threshold_aec=0.6), models_dir)
    assert tuned.threshold(0.5, strict=True, echo_cancelled=True) == 0.6
