"""Where the model files live, and what to tell a person when one is missing.

scripts/fetch-models writes the layout below; every other part asks here instead of building paths itself,
so a missing or misnamed model always produces the same actionable message ("run scripts/fetch-models").

    <models>/openwakeword/<name>_v0.1.onnx, melspectrogram.onnx, embedding_model.onnx
    <models>/piper/<voice>.onnx + <voice>.onnx.json
    <models>/smart-turn/smart-turn-v3.2-cpu.onnx

PocketSphinx's en-US model is not fetched: it ships inside the pocketsphinx wheel (`pocketsphinx_model_dir`).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from daemon.config.settings import BUILTIN_WAKE_MODELS, Settings

WAKE_DIR = "openwakeword"
PIPER_DIR = "piper"
BUILTIN_WAKE_VERSION = "v0.1"
FETCH_HINT = "run scripts/fetch-models"
DEFAULT_VOICE = "en_US-joe-medium"


POCKETSPHINX_FILES = ("en-us", "cmudict-en-us.dict", "en-us.lm.bin")
"""The acoustic model, the dictionary and the general language model in `pocketsphinx_model_dir()`."""


def pocketsphinx_model_dir() -> Path:
    """The en-US model folder inside the pocketsphinx wheel (ImportError when pocketsphinx is not installed)."""
    from pocketsphinx import get_model_path

    return Path(get_model_path()) / "en-us"


class ModelError(Exception):
    """A model file is missing or unusable; the message names the path and the fix."""


class FeatureModels(NamedTuple):
    """openWakeWord's shared front end: audio → mel spectrogram → speech embedding."""

    melspectrogram: Path
    embedding: Path


def _builtin_wake_file(name: str, models_dir: Path) -> Path:
    return models_dir / WAKE_DIR / f"{name}_{BUILTIN_WAKE_VERSION}.onnx"


def _require(path: Path, what: str, fix: str) -> Path:
    if not path.is_file():
        raise ModelError(f"{what} not found at {path}: {fix}")
    return path


def wake_model_path(name_or_path: str, models_dir: Path) -> Path:
    """A built-in name (hey_jarvis, …) → its file under models_dir; otherwise a path to an .onnx model.

    A relative path is looked up in the working directory first, then under models_dir/openwakeword.
    """
    if name_or_path in BUILTIN_WAKE_MODELS:
        path = _builtin_wake_file(name_or_path, models_dir)
        return _require(path, f"wake model {name_or_path!r}", FETCH_HINT)
    if not name_or_path.endswith(".onnx"):
        raise ModelError(
            f"wake model {name_or_path!r}: expected one of {', '.join(BUILTIN_WAKE_MODELS)} "
            "or a path to an .onnx file (tflite models are not supported: Hark runs ONNX only)"
        )
    path = Path(name_or_path).expanduser()
    if not path.is_absolute() and not path.exists():
        path = models_dir / WAKE_DIR / path
    return _require(path, f"wake model {name_or_path!r}", "check wake.models in the config")


def wake_label(name_or_path: str) -> str:
    """The name detections carry: the built-in name, or a custom file's stem ("hey_jarvis", "my_word")."""
    return name_or_path if name_or_path in BUILTIN_WAKE_MODELS else Path(name_or_path).stem


def feature_model_paths(models_dir: Path) -> FeatureModels:
    """The two feature models every wake model needs."""
    base = models_dir / WAKE_DIR
    return FeatureModels(
        _require(base / "melspectrogram.onnx", "openWakeWord feature model", FETCH_HINT),
        _require(base / "embedding_model.onnx", "openWakeWord feature model", FETCH_HINT),
    )


def piper_voice_path(name_or_path: str, models_dir: Path) -> Path:
    """A voice name (en_US-joe-medium) → models_dir/piper/<name>.onnx; or a path to a voice .onnx.

    Piper also needs the voice's config next to it (<voice>.onnx.json), so both are checked.
    """
    if name_or_path.endswith(".onnx"):
        path = Path(name_or_path).expanduser()
        fix = "check fallback.voice in the config"
    else:
        if not name_or_path or "/" in name_or_path:
            raise ModelError(
                f"Piper voice {name_or_path!r}: expected a voice name like en_US-joe-medium or a path ending in .onnx"
            )
        path = models_dir / PIPER_DIR / f"{name_or_path}.onnx"
        fix = FETCH_HINT if name_or_path == DEFAULT_VOICE else f"{FETCH_HINT} --voice {name_or_path}"
    _require(path, f"Piper voice {name_or_path!r}", fix)
    _require(path.with_name(path.name + ".json"), f"config of Piper voice {name_or_path!r}", fix)
    return path


def missing_models(settings: Settings) -> list[str]:
    """For `hark check`: one message per fetched model the configuration needs but cannot find (empty = all
    there). Custom wake models and a voice other than the default are checked with the other files the
    configuration names (daemon.cli.files)."""
    models_dir = settings.models_dir
    found: list[str] = []
    for model in settings.wake.models:
        if model.name not in BUILTIN_WAKE_MODELS:
            continue
        try:
            wake_model_path(model.name, models_dir)
        except ModelError as e:
            found.append(str(e))
    try:
        feature_model_paths(models_dir)
    except ModelError as e:
        found.append(str(e))
    if settings.fallback.voice == DEFAULT_VOICE:
        try:
            piper_voice_path(settings.fallback.voice, models_dir)
        except ModelError as e:
            found.append(str(e))
    return found


TURN_DIR = "smart-turn"
TURN_MODEL_FILE = "smart-turn-v3.2-cpu.onnx"


def turn_model_path(models_dir: Path) -> Path:
    """Smart Turn v3 (endpoint.turn_model = "smart-turn"); it may be absent: the daemon then ends requests by
    silence alone, so this does not check (`hark check` does: daemon.cli.check.turn_model_problem)."""
    return models_dir / TURN_DIR / TURN_MODEL_FILE
