"""End of turn: has the person finished the sentence, or only paused? Smart Turn v3 on the device.

Why a model and not a shorter silence: a fixed silence either waits 700 ms after every request or cuts people
off when they pause mid-sentence ("set a timer for … ten minutes"). Smart Turn v3 (pipecat-ai/smart-turn,
BSD 2-Clause; a Whisper-tiny encoder and a classifier, ~8.7 MB ONNX) hears the last 8 s of the request and
answers the probability that the turn is complete, so a finished sentence can end after ~200 ms of silence
while an unfinished one keeps listening.

Three parts, all synchronous and free of the daemon's wiring:
- `log_mel_features`: the model's input, Whisper log-mel in numpy (no transformers, no torch at run time),
  checked against `transformers.WhisperFeatureExtractor(chunk_length=8)` in tests/test_smart_turn.py.
- `SmartTurn`: the ONNX session; `judge()` / `predict()` run in the daemon's single inference worker thread.
- `TurnPolicy`: when to ask the model and when the turn ends, from "silence so far" (in samples) and the
  model's answers. It has no clock and no VAD of its own, so the same policy serves a live microphone, a WAV
  fed at full speed and a unit test alike.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16_000
"""The model's rate; the daemon's capture rate (daemon.events.INPUT_RATE_HZ) is the same."""
WINDOW_SAMPLES = 8 * SAMPLE_RATE_HZ
"""The model hears the last 8 s; shorter audio is left-padded with zeros (silence before the request)."""
N_FFT = 400
"""25 ms analysis window (Whisper's)."""
HOP_SAMPLES = 160
"""10 ms between frames: 128000 samples → 801 frames, the last one dropped → 800."""
N_MELS = 80
N_FRAMES = WINDOW_SAMPLES // HOP_SAMPLES
FEATURES_SHAPE = (1, N_MELS, N_FRAMES)
_MEL_FLOOR = 1e-10
_NORM_EPS = 1e-7
_FETCH_HINT = "run scripts/fetch-models"

Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]


# --- features ------------------------------------------------------------------------------------------------


def _hz_to_mel(hz: Float64Array) -> Float64Array:
    """Slaney's mel scale (linear below 1 kHz, logarithmic above), as Whisper uses."""
    mel = 3.0 * hz / 200.0
    log_part = hz >= 1000.0
    mel[log_part] = 15.0 + np.log(hz[log_part] / 1000.0) * (27.0 / np.log(6.4))
    return mel


def _mel_to_hz(mel: Float64Array) -> Float64Array:
    hz = 200.0 * mel / 3.0
    log_part = mel >= 15.0
    hz[log_part] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[log_part] - 15.0))
    return hz


def _mel_filterbank() -> Float64Array:
    """(N_MELS, N_FFT//2+1) Slaney-normalised triangles from 0 Hz to Nyquist: Whisper's `mel_filters`."""
    fft_hz = np.linspace(0.0, SAMPLE_RATE_HZ // 2, N_FFT // 2 + 1)
    mel_edges = np.linspace(0.0, float(_hz_to_mel(np.array([SAMPLE_RATE_HZ / 2.0]))[0]), N_MELS + 2)
    edges_hz = _mel_to_hz(mel_edges)
    widths = np.diff(edges_hz)
    slopes = edges_hz[np.newaxis, :] - fft_hz[:, np.newaxis]
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    triangles = np.maximum(0.0, np.minimum(down, up))
    triangles *= 2.0 / (edges_hz[2 : N_MELS + 2] - edges_hz[:N_MELS])
    return np.ascontiguousarray(triangles.T)


_MEL_FILTERS = _mel_filterbank()
_WINDOW = np.hanning(N_FFT + 1)[:-1]
"""Periodic Hann (torch.hann_window / transformers' window_function), computed once."""


def as_float_audio(pcm16k: bytes | npt.NDArray[np.generic]) -> Float32Array:
    """16 kHz mono as float32 in [-1, 1): PCM16 bytes or int16 samples are scaled by 1/32768, floats kept."""
    if isinstance(pcm16k, (bytes, bytearray, memoryview)):
        samples: npt.NDArray[np.generic] = np.frombuffer(pcm16k, dtype="<i2")
    else:
        samples = np.asarray(pcm16k)
    if samples.ndim != 1:
        raise ValueError(f"expected mono audio (1-D samples), got shape {samples.shape}")
    audio: Float32Array = samples.astype(np.float32, copy=False)
    if np.issubdtype(samples.dtype, np.integer):
        audio = audio / np.float32(32768.0)
    return audio


def last_window(audio: Float32Array) -> Float32Array:
    """The last 8 s, left-padded with zeros when shorter (what the model was trained on)."""
    if len(audio) >= WINDOW_SAMPLES:
        return audio[-WINDOW_SAMPLES:]
    return np.concatenate([np.zeros(WINDOW_SAMPLES - len(audio), dtype=np.float32), audio])


def log_mel_features(pcm16k: bytes | npt.NDArray[np.generic]) -> Float32Array:
    """Smart Turn's input, shape (1, 80, 800) float32, for the last 8 s of 16 kHz mono audio.

    Equals `WhisperFeatureExtractor(chunk_length=8)(last_window(audio), sampling_rate=16000,
    padding="max_length", max_length=128000, truncation=True, do_normalize=True)` as pipecat calls it:
    the whole padded window is normalised to zero mean and unit variance (in float32, zeros included), then
    a centred (reflect-padded) power STFT, mel projection, log10, a floor 8 below the peak and (x + 4) / 4.
    """
    x = last_window(as_float_audio(pcm16k))
    x = (x - x.mean()) / np.sqrt(x.var() + np.float32(_NORM_EPS))
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[::HOP_SAMPLES][:N_FRAMES]  # the trailing frame is dropped
    spectrum = np.fft.rfft(frames * _WINDOW, axis=-1)
    power = spectrum.real**2 + spectrum.imag**2
    # einsum, not `@`: a BLAS matmul this small is no faster, and OpenBLAS's worker threads then spin on every
    # core (measured: 2 ms wall but 12 ms CPU on 2 cores), CPU the wake detector and Piper need on a Pi.
    mel = np.einsum("mf,tf->mt", _MEL_FILTERS, power)
    log_spec = np.log10(np.maximum(_MEL_FLOOR, mel))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    features: Float32Array = ((log_spec + 4.0) / 4.0).astype(np.float32)[np.newaxis]
    return features


# --- the model -----------------------------------------------------------------------------------------------


class TurnModelError(Exception):
    """The turn model cannot be used; the message names the file and the fix."""


@dataclass(frozen=True, slots=True)
class TurnJudgement:
    """One answer of the model, with what it cost (the daemon traces all three)."""

    probability: float
    """That the turn is complete, 0–1."""
    features_ms: float
    inference_ms: float


class SmartTurn:
    """The Smart Turn v3 ONNX session. Not thread-safe by design: the daemon's one inference worker owns it.

    `threads` is onnxruntime's intra-op thread count. One is the default: on a 4-core Pi the wake detector,
    Piper and the event loop need the other cores, and scripts/bench_turn.py shows a second thread buys nothing
    measurable on a 2-core x86 (45 ms either way for 8 s of audio).
    """

    def __init__(self, model_path: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        self.path = model_path
        if not model_path.is_file():
            raise TurnModelError(f"turn model {model_path} is missing: {_FETCH_HINT}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # With threads > 1, idle pool threads would otherwise spin after each run: measured on 2 cores, 2 threads
        # doubled the CPU per judgement and slowed everything else in the process.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._session = ort.InferenceSession(
                str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own pybind exception types for a bad file
            raise TurnModelError(
                f"turn model {model_path} cannot be loaded ({type(e).__name__}: {str(e).strip()[:200]}); "
                f"the file is corrupt or not an ONNX model: delete it and {_FETCH_HINT}"
            ) from e
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if [i.name for i in inputs] != ["input_features"] or list(inputs[0].shape[1:]) != [N_MELS, N_FRAMES]:
            got = ", ".join(f"{i.name}{i.shape}" for i in inputs)
            raise TurnModelError(
                f"turn model {model_path} takes {got}, not input_features[batch, 80, 800]: it is not Smart Turn "
                f"v3; {_FETCH_HINT}"
            )
        self._output = outputs[0].name
        log.debug("loaded turn model %s (%d intra-op threads)", model_path, threads)

    def judge(self, pcm16k: bytes | npt.NDArray[np.generic]) -> TurnJudgement:
        """The model's answer for the request so far (16 kHz mono; only the last 8 s are heard)."""
        start = time.perf_counter()
        features = log_mel_features(pcm16k)
        mid = time.perf_counter()
        (out,) = self._session.run([self._output], {"input_features": features})
        end = time.perf_counter()
        probability = float(np.asarray(out).reshape(-1)[0])
        return TurnJudgement(probability, (mid - start) * 1000.0, (end - mid) * 1000.0)

    def predict(self, pcm16k: bytes | npt.NDArray[np.generic]) -> float:
        """Probability (0–1) that the turn is complete."""
        return self.judge(pcm16k).probability


# --- the policy ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnSettings:
    """When to ask the model and when to stop waiting for it (the daemon maps `[endpoint]` onto these)."""

    turn_min_silence_ms: int = 200
    """Silence before the first judgement: shorter gaps are just between words, not worth a model run."""
    turn_recheck_ms: int = 0
    """While the model says "unfinished", ask again every this much more silence; 0 = once per pause (then
    only speech or the ceiling ends it). Smart Turn hears the trailing silence too and calls almost anything
    "finished" after ~500 ms of it ("set a timer for" + 210 ms: 0.07; + 480 ms: 0.98), so asking again mostly
    undoes a correct "unfinished"."""
    turn_max_silence_ms: int = 1500
    """The ceiling: this much silence ends the turn whatever the model says."""
    turn_threshold: float = 0.5
    """A probability above this is "complete" (0.5 is the model's own decision boundary)."""
    turn_unlikely_end_threshold: float = 0.95
    """The bar instead, when the words say the request so far is an unlikely sentence end (daemon.listen.words:
    P(end | last two words) below endpoint.turn_min_end_probability); 1.0 = held like an unfinished word."""

    def __post_init__(self) -> None:
        if not 0 < self.turn_min_silence_ms <= self.turn_max_silence_ms:
            raise ValueError(
                f"turn_min_silence_ms = {self.turn_min_silence_ms} must be > 0 and <= turn_max_silence_ms "
                f"({self.turn_max_silence_ms})"
            )
        if self.turn_recheck_ms < 0:
            raise ValueError(f"turn_recheck_ms = {self.turn_recheck_ms} must be >= 0 (0 = ask once per pause)")
        if not 0.0 <= self.turn_threshold < 1.0:
            raise ValueError(f"turn_threshold = {self.turn_threshold} must be in [0, 1)")
        if not 0.0 <= self.turn_unlikely_end_threshold <= 1.0:
            raise ValueError(f"turn_unlikely_end_threshold = {self.turn_unlikely_end_threshold} must be in [0, 1]")


@dataclass(frozen=True, slots=True)
class TurnAsk:
    """Run the model on the audio so far, then hand this back to `TurnPolicy.judged` with the answer."""

    silence_samples: int
    """Silence so far when the question was asked."""
    generation: int
    """Which silence it belongs to: answers for a silence that speech has since broken are stale."""


@dataclass(frozen=True, slots=True)
class TurnEnd:
    """The turn is over: `model` (judged complete) or `silence` (the ceiling). `max_length` is the endpointer's."""

    reason: Literal["model", "silence"]
    silence_samples: int
    """Silence so far when the end was decided (for `model`: when the deciding question was asked)."""
    probability: float | None
    """The deciding (for `silence`: the last) answer of the model, None if it never answered."""


class TurnPolicy:
    """When to ask the turn model and when the turn ends, from silence lengths and the model's answers.

    Driven per capture frame by the daemon, synchronously and without a clock: `silence(n)` with the silence
    so far in samples (from webrtcvad, which stays in charge of speech vs. silence), `speech()` when voice
    resumes, `judged(ask, p)` when an answer arrives. At most one question is in flight, so a slow worker is
    never queued up with stale audio; an answer that arrives after speech resumed is ignored.
    """

    def __init__(self, settings: TurnSettings, rate_hz: int = SAMPLE_RATE_HZ) -> None:
        self.settings = settings
        self._min = settings.turn_min_silence_ms * rate_hz // 1000
        self._recheck = settings.turn_recheck_ms * rate_hz // 1000
        self._max = settings.turn_max_silence_ms * rate_hz // 1000
        self._generation = 0
        self._pending: TurnAsk | None = None
        self._next_ask = self._min
        self._last_probability: float | None = None

    def speech(self) -> None:
        """Voice again: the next silence starts from scratch and any question in flight is stale."""
        self._generation += 1
        self._pending = None
        self._next_ask = self._min
        self._last_probability = None

    def silence(self, silence_samples: int) -> TurnAsk | TurnEnd | None:
        """Silence has lasted this long: ask the model now, end the turn (ceiling), or keep listening (None)."""
        if silence_samples >= self._max:
            return TurnEnd("silence", silence_samples, self._last_probability)
        if self._pending is None and silence_samples >= self._next_ask:
            self._pending = TurnAsk(silence_samples, self._generation)
            return self._pending
        return None

    def judged(
        self, ask: TurnAsk, probability: float | None, unfinished_word: bool = False, unlikely_end: bool = False
    ) -> TurnEnd | None:
        """The model's answer to `ask` (None: it failed, keep listening). "Complete" ends the turn at once,
        unless the request so far ends on a word no request ends on (`unfinished_word`, from daemon.listen.words):
        then the answer counts as "unfinished", whatever the tone. Where its last words rarely end a sentence
        (`unlikely_end`) the bar is turn_unlikely_end_threshold instead (if higher)."""
        if self._pending is None or ask != self._pending:
            log.debug("stale turn judgement %.3f ignored (speech resumed after it was asked)", probability or 0.0)
            return None
        self._pending = None
        self._next_ask = ask.silence_samples + self._recheck if self._recheck else self._max
        if probability is None:
            return None
        self._last_probability = probability
        bar = self.settings.turn_threshold
        if unlikely_end:
            bar = max(bar, self.settings.turn_unlikely_end_threshold)
        if probability > bar and not unfinished_word:
            return TurnEnd("model", ask.silence_samples, probability)
        return None
