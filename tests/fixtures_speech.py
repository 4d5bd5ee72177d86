"""Fixtures for the speech rig: the fetched models and a session-cached speech factory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.speech import Speech

REPO = Path(__file__).resolve().parent.parent
FETCH = REPO / "scripts" / "fetch-models"


def default_models_dir() -> Path:
    """The same default the daemon uses: $HARK_MODELS_DIR, else <repo>/models."""
    env = os.environ.get("HARK_MODELS_DIR")
    return Path(env) if env else REPO / "models"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """The models directory, fetched on first use (pip's cache makes later machines/runs fast)."""
    dest = default_models_dir()
    check = [sys.executable, str(FETCH), "--dest", str(dest), "--check"]
    if subprocess.run(check, capture_output=True, timeout=120, check=False).returncode != 0:
        cmd = [sys.executable, str(FETCH), "--dest", str(dest)]
        fetch = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
        if fetch.returncode != 0:
            pytest.fail(f"scripts/fetch-models failed (exit {fetch.returncode}):\n{fetch.stderr[-2000:]}")
    return dest


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Speech:
    """speech.espeak(text) / speech.piper(text) → cached 16 kHz WAV; speech.concat(parts, silences) → Clip."""
    return Speech(tmp_path_factory.mktemp("speech"), models_dir)
