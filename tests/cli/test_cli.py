"""The commands a person types: `hark demo` (no mic, no key), `hark devices` on the rig."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.cli.main import config_path, load_settings, overrides, parser
from tests.fixtures_audio import PulseRig
from tests.harness import hark

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


CONFIG = str(REPO / "config.toml")


@pytest.mark.parametrize(
    ("argv", "config", "sets"),
    [
        (["--set", "a.b=1", "run"], None, ["a.b=1"]),
        (["run", "--set", "a.b=1"], None, ["a.b=1"]),
        (["--set", "a.b=1", "run", "--set", "c.d=2"], None, ["a.b=1", "c.d=2"]),
        (
            ["--set", "a.b=1", "--set", "a.c=2", "run", "--set", "c.d=3", "--trace", "t"],
            None,
            ["a.b=1", "a.c=2", "c.d=3"],
        ),
        (["--config", "F", "run", "--set", "x.y=1"], "F", ["x.y=1"]),
        (["run", "--config", "F"], "F", []),
        (["--config", "F", "run"], "F", []),
        (["--set", "a.b=1", "check", "--config", "F"], "F", ["a.b=1"]),
        (["--config", "F", "--set", "a.b=1", "demo", "--set", "c.d=2", "--config", "G"], "G", ["a.b=1", "c.d=2"]),
        (["--set", "a.b=1", "say", "hello", "--set", "c.d=2"], None, ["a.b=1", "c.d=2"]),
        (["--set=a.b=1", "devices", "--config=F"], "F", ["a.b=1"]),
        (["run"], None, []),
    ],
)
def test_config_and_set_work_in_any_position_and_mix(argv: list[str], config: str | None, sets: list[str]) -> None:
    args = parser().parse_args(argv)
    assert config_path(args) == config
    assert overrides(args) == sets


def test_set_before_and_after_the_command_both_reach_the_settings() -> None:
    args = parser().parse_args(
        [
            "--set",
            "wake.threshold=0.6",
            "--config",
            CONFIG,
            "run",
            "--set",
            "audio.volume=33",
            "--set",
            "wake.threshold=0.7",
        ]
    )
    settings = load_settings(args)
    assert settings.audio.volume == 33
    assert settings.wake.threshold == 0.7  # the later --set wins, as written


@pytest.mark.parametrize(
    "argv",
    [
        ["--set", "audio.volume=loud", "check", "--set", "wake.threshold=0.6"],
        ["--set", "audio.volume=loud", "--config", CONFIG, "check", "--set", "wake.threshold=0.6"],
        ["--config", CONFIG, "check", "--set", "audio.volume=loud"],
        ["--set", "wake.threshold=0.6", "check", "--config", CONFIG, "--set", "audio.volume=loud"],
        ["--set", "novalue", "check", "--set", "wake.threshold=0.6"],
    ],
)
def test_a_bad_override_in_any_position_exits_78(argv: list[str]) -> None:
    proc = hark(*argv)
    assert proc.returncode == 78, proc.stdout + proc.stderr
    assert "audio.volume = 'loud'" in proc.stderr or "expected section.key=value" in proc.stderr


def test_soxr_is_used_only_by_the_one_resampler() -> None:
    """Rates change in daemon/audio/resample.py only (hark demo used to call soxr itself)."""
    users = sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "daemon").rglob("*.py")
        if "import soxr" in path.read_text() or "from soxr" in path.read_text()
    )
    assert users == ["daemon/audio/resample.py"]


async def test_demo_speaks_the_utterance_through_the_resampler(models_dir: Path) -> None:
    from daemon.cli.demo import _piper
    from daemon.config.loader import from_dict

    settings = from_dict({"paths": {"models": str(models_dir)}})
    pcm = await _piper(settings, "Hey Jarvis!")
    seconds = len(pcm) / 2 / 16_000
    assert 0.4 < seconds < 3.0, seconds  # 16 kHz now (Piper's 22,050 Hz would read ~1.4x longer)
