"""The commands a person types: `hark demo` (no mic, no key), `hark devices` on the rig."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures_audio import PulseRig

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_the_whole_pipeline_and_answers_with_the_local_voice(tmp_path: Path, models_dir: Path) -> None:
    out = tmp_path / "answer.wav"
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env |= {"HOME": str(tmp_path), "HARK_MODELS_DIR": str(models_dir)}
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", "demo", "--output", f"wav:{out}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    timeline = proc.stdout
    for line in (
        "wake_detected",
        "idle → listening",
        "listening → processing",
        "processing → responding",
        "responding → idle",
        "no_api_key",
    ):
        assert line in timeline, timeline
    assert out.stat().st_size > 48_000  # over a second of the spoken fallback


def test_devices_lists_the_rig(pulse_rig: PulseRig) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "daemon", "devices"],
        cwd=REPO,
        env=pulse_rig.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Input devices" in proc.stdout and "Output devices" in proc.stdout
    assert "default" in proc.stdout.lower()
