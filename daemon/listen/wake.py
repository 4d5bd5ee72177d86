"""openWakeWord on 80 ms frames → `WakeDetected` events.

Why our own trigger/refractory logic instead of openWakeWord's `patience`/`debounce_time`: those count wall
time and share one threshold dict, while we need per-model settings, a stricter threshold while an answer
plays, and timing in input samples so a WAV fed at full speed behaves exactly like a live microphone.

`process()` is synchronous CPU work (ONNX inference): the caller runs it in a single-worker executor, so
the detector is only ever used from one thread at a time.

Over an answer with echo cancellation, the detector listens to the linear canceller's output (the user's
voice intact, some echo left; see daemon.audio.echo) and a detection counts only if the fully cancelled
audio heard someone in the room meanwhile: echo alone leaves AEC3's output near silent (27-70 dB under the
linear output), a person talking over the answer does not (4-14 dB under).
"""

from __future__ import annotations

import logging
import sys
import types
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daemon.audio.frames import INPUT_RATE_HZ, AudioFrame
from daemon.config.models import ModelError, feature_model_paths, wake_label, wake_model_path
from daemon.config.settings import WakeSettings
from daemon.observe.events import WakeDetected

log = logging.getLogger(__name__)

NEAR_END_MIN_DB = -20.0
"""Over an answer, a wake word heard in the linear output counts only if AEC3's output carried at least this
much of the linear output's energy over the last PRESENCE_BLOCKS. Measured where the detector fired: -4 to
-14 dB for "hey jarvis" spoken over the answer on the echo rig; -70 to -27 dB for the answer's own echo
(30 min of answers with sound-alikes, simulated room)."""
PRESENCE_BLOCKS = 16
"""1.3 s of 80 ms blocks: a wake phrase and a little before it."""


@dataclass(frozen=True)
class WakeRule:
    """The effective settings of one model after falling back to the wake-level defaults."""

    label: str
    path: Path
    threshold: float
    trigger_level: int
    refractory_samples: int


def resolve_rules(settings: WakeSettings, models_dir: Path) -> list[WakeRule]:
    """Per-model table values win over the wake-level defaults; paths are checked here."""
    rules: list[WakeRule] = []
    for model in settings.models:
        refractory_s = settings.refractory_s if model.refractory_s is None else model.refractory_s
        rule = WakeRule(
            label=wake_label(model.name),
            path=wake_model_path(model.name, models_dir),
            threshold=settings.threshold if model.threshold is None else model.threshold,
            trigger_level=settings.trigger_level if model.trigger_level is None else model.trigger_level,
            refractory_samples=round(refractory_s * INPUT_RATE_HZ),
        )
        if any(r.label == rule.label for r in rules):
            raise ModelError(
                f"wake.models lists {model.name!r} twice (or two files named {rule.path.stem}.onnx); "
                "each model may appear once"
            )
        rules.append(rule)
    return rules


def _skip_verifier_training_import() -> None:
    """openwakeword/__init__.py (0.6.0, pinned) imports `custom_verifier_model` only to export a training helper,
    which pulls scikit-learn and scipy: ~1.5 s of a ~2 s start-up here, before the house can be heard. Hark
    never trains verifiers, so that module is replaced by a stub whose helper says why it is missing (loading a
    pickled verifier would still import scikit-learn through pickle, as before)."""
    name = "openwakeword.custom_verifier_model"
    if name in sys.modules or "openwakeword" in sys.modules:
        return
    stub = types.ModuleType(name, "stand-in: Hark does not train custom verifiers (see daemon.listen.wake)")

    def train_custom_verifier(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("train_custom_verifier is not available inside Hark: train verifiers with openwakeword")

    stub.train_custom_verifier = train_custom_verifier  # type: ignore[attr-defined]
    sys.modules[name] = stub


class WakeDetector:
    """Feed it every capture frame; it answers with the detections that frame completed."""

    def __init__(self, settings: WakeSettings, models_dir: Path) -> None:
        self._rules = resolve_rules(settings, models_dir)
        self._responding_threshold = settings.responding_threshold
        self._responding_threshold_aec = settings.responding_threshold_aec
        features = feature_model_paths(models_dir)
        # Imported here: openwakeword is installed with --no-deps and pulls numpy/onnxruntime on import.
        _skip_verifier_training_import()
        from openwakeword.model import Model

        try:
            self._model: Any = Model(
                wakeword_models=[str(r.path) for r in self._rules],
                inference_framework="onnx",
                melspec_model_path=str(features.melspectrogram),
                embedding_model_path=str(features.embedding),
            )
        except Exception as e:  # onnxruntime raises its own types for corrupt files
            paths = ", ".join(str(r.path) for r in self._rules)
            raise ModelError(f"cannot load wake models ({paths}): {e}; run scripts/fetch-models") from e
        # openWakeWord keys its scores by file stem ("hey_jarvis_v0.1"); we report our labels.
        self._keys = {r.label: r.path.stem for r in self._rules}
        self._streak: dict[str, int] = {}
        self._quiet_until: dict[str, int] = {}
        self._energy: deque[tuple[float, float]] = deque(maxlen=PRESENCE_BLOCKS)  # (AEC3, linear) per block
        self.vetoed = 0  # detections in the linear output refused because AEC3 heard nobody: echo
        self._last_sample = 0
        # openWakeWord's own reset re-embeds 4 s of noise (~60 ms of CPU per turn): keep that starting
        # feature buffer once and restore a copy instead (same state; layout of openwakeword 0.6.0, pinned).
        self._fresh_features = np.array(self._model.preprocessor.feature_buffer, copy=True)
        log.info("wake models loaded: %s", ", ".join(self.names))

    @property
    def names(self) -> list[str]:
        """The labels detections carry, e.g. ["hey_jarvis", "alexa"]."""
        return [r.label for r in self._rules]

    def process(self, frame: AudioFrame, strict: bool = False, echo_cancelled: bool = False) -> list[WakeDetected]:
        """Score one frame; `strict` (an answer is playing) raises every threshold to responding_threshold,
        or with `echo_cancelled` audio only to responding_threshold_aec when that is set."""
        if frame.sample < self._last_sample:
            # A new input stream (offsets start again): refractory times of the old one mean nothing.
            self._quiet_until.clear()
        self._last_sample = frame.sample
        pcm = np.frombuffer(frame.pcm, dtype=np.int16)
        over_answer = strict and echo_cancelled and frame.linear is not None
        if over_answer and frame.linear is not None:
            linear = np.frombuffer(frame.linear, dtype=np.int16)
            self._energy.append((_energy(pcm), _energy(linear)))
            pcm = linear
        elif self._energy:
            self._energy.clear()
        scores: dict[str, float] = self._model.predict(pcm)
        found: list[WakeDetected] = []
        for rule in self._rules:
            score = float(scores.get(self._keys[rule.label], 0.0))
            threshold = self.threshold(rule.threshold, strict, echo_cancelled)
            streak = self._streak.get(rule.label, 0) + 1 if score >= threshold else 0
            self._streak[rule.label] = streak
            if streak < rule.trigger_level or frame.sample < self._quiet_until.get(rule.label, 0):
                continue
            if over_answer and not self._someone_spoke():
                self.vetoed += 1
                self._streak[rule.label] = 0
                log.debug("wake %s score %.3f at sample %d: only in the echo, ignored", rule.label, score, frame.sample)
                continue
            self._quiet_until[rule.label] = frame.sample + rule.refractory_samples
            self._streak[rule.label] = 0
            log.debug("wake %s score %.3f at sample %d", rule.label, score, frame.sample)
            found.append(WakeDetected(rule.label, score, frame.sample))
        return found

    def _someone_spoke(self) -> bool:
        """Over the recent blocks, AEC3's output kept at least NEAR_END_MIN_DB of the linear output's energy."""
        cancelled = sum(e[0] for e in self._energy)
        linear = sum(e[1] for e in self._energy)
        return cancelled >= linear * 10 ** (NEAR_END_MIN_DB / 10)

    def threshold(self, normal: float, strict: bool, echo_cancelled: bool) -> float:
        """The score a model with threshold `normal` must reach now (while answering: `strict`)."""
        if not strict:
            return normal
        if echo_cancelled:
            aec = self._responding_threshold_aec
            return normal if aec is None else max(normal, aec)
        return max(normal, self._responding_threshold)

    def reset(self) -> None:
        """Forget buffered audio and scores (after our own playback, on resume) so stale audio cannot fire.

        openWakeWord then needs about a second of fresh audio before it can score a phrase again.
        """
        self._forget_audio()
        self._quiet_until.clear()

    def rewind(self, sample: int) -> None:
        """Forget buffered audio and scores but keep refractory times; the next block fed starts at input
        sample `sample` (earlier than the last one: the same stream, not a new one). The wake gate calls it
        before feeding the audio that led up to a voice, so a phrase detected before cannot fire twice."""
        self._forget_audio()
        self._last_sample = sample

    def _forget_audio(self) -> None:
        pre = self._model.preprocessor
        pre.raw_data_buffer.clear()
        pre.melspectrogram_buffer = np.ones((76, 32))
        pre.accumulated_samples = 0
        pre.raw_data_remainder = np.empty(0)
        pre.feature_buffer = self._fresh_features.copy()
        for buffer in self._model.prediction_buffer.values():
            buffer.clear()
        self._streak.clear()
        self._energy.clear()


def _energy(pcm: np.ndarray) -> float:
    samples = pcm.astype(np.float64)
    return float(np.dot(samples, samples))
