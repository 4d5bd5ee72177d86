"""Every file the configuration names is checked at load: a bad one exits 78 naming key, path and fix.

Before this, a chime that is not a WAV, a missing custom wake model or a `wav:` output in a missing folder
ended in a traceback and exit 1 half-way through start-up (systemd restarts that in a loop), and a
`fallback.voice` that is a folder started "fine" and then stayed silent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import wave
from pathlib import Path

import pytest

from daemon.cli.files import check_files
from daemon.config import loader as config_file
from daemon.config.settings import ConfigError, Settings
from tests.harness import hark as run_hark

REPO = Path(__file__).resolve().parents[2]
ROOT = os.geteuid() == 0
"""root reads every file whatever its mode: the permission cases cannot be made to fail then."""


def write_wav(path: Path, frames: int = 2400, rate_hz: int = 24_000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(b"\x10\x00" * frames)
    return path


@pytest.fixture
def files(tmp_path: Path, models_dir: Path) -> Path:
    """A folder with one good file of each kind the configuration can name."""
    write_wav(tmp_path / "ding.wav")
    write_wav(tmp_path / "in.wav", rate_hz=16_000)
    shutil.copy(models_dir / "openwakeword" / "alexa_v0.1.onnx", tmp_path / "my_word.onnx")
    voice = models_dir / "piper" / "en_US-joe-medium.onnx"
    (tmp_path / "voice.onnx").symlink_to(voice)
    shutil.copy(voice.with_name(voice.name + ".json"), tmp_path / "voice.onnx.json")
    (tmp_path / "config.toml").write_text("")
    return tmp_path


def load(files: Path, *overrides: str) -> Settings:
    settings = config_file.load(files / "config.toml", [f"paths.models={str(files / 'models')!r}", *overrides])
    check_files(settings)
    return settings


def problem(files: Path, *overrides: str) -> str:
    with pytest.raises(ConfigError) as err:
        load(files, *overrides)
    return str(err.value)


def test_good_files_of_every_kind_load(files: Path) -> None:
    s = load(
        files,
        f"chimes.wake={str(files / 'ding.wav')!r}",
        'chimes.done=""',
        f"wake.models=[{str(files / 'my_word.onnx')!r}]",
        f"audio.input='wav:{files / 'in.wav'}'",
        f"audio.output='wav:{files / 'out.wav'}'",
        f"fallback.voice={str(files / 'voice.onnx')!r}",
    )
    assert s.chimes.wake == str(files / "ding.wav")


@pytest.mark.parametrize(
    ("make", "override", "words"),
    [
        # chimes: exists, a file, a WAV the project's reader takes, with audio in it
        (None, "chimes.wake='{d}/nope.wav'", ["chimes.wake = ", "nope.wav", "file not found", '"builtin"']),
        ("dir:x.wav", "chimes.done='{d}/x.wav'", ["chimes.done = ", "is a folder", '"" (off)']),
        ("text:x.wav", "chimes.error='{d}/x.wav'", ["chimes.error = ", "not a readable PCM WAV", '"builtin"']),
        ("empty-wav:x.wav", "chimes.wake='{d}/x.wav'", ["chimes.wake = ", "holds no audio"]),
        # custom wake models: exists, a file, ONNX
        (None, "wake.models=['{d}/gone.onnx']", ["wake.models[0].name = ", "gone.onnx", "file not found"]),
        ("dir:w.onnx", "wake.models=['alexa', '{d}/w.onnx']", ["wake.models[1].name = ", "is a folder"]),
        ("wav:w.onnx", "wake.models=['{d}/w.onnx']", ["wake.models[0].name = ", "not an ONNX model"]),
        ("text:w.onnx", "wake.models=['{d}/w.onnx']", ["not an ONNX model"]),
        ("empty:w.onnx", "wake.models=['{d}/w.onnx']", ["empty, not an ONNX model"]),
        ("cut-onnx:w.onnx", "wake.models=['{d}/w.onnx']", ["truncated"]),
        # wav: input and output
        (None, "audio.input='wav:{d}/none.wav'", ["audio.input = 'wav:", "file not found", "PCM WAV"]),
        ("dir:in", "audio.input='wav:{d}/in'", ["audio.input = ", "is a folder"]),
        ("text:bad.wav", "audio.input='wav:{d}/bad.wav'", ["audio.input = ", "not a readable PCM WAV"]),
        (None, "audio.output='wav:{d}/no/such/folder/out.wav'", ["audio.output = ", "does not exist", "create it"]),
        ("dir:out", "audio.output='wav:{d}/out'", ["audio.output = ", "is a folder", "expected a file name"]),
        # the Piper voice: an .onnx with its .onnx.json, neither a folder
        ("dir:v.onnx", "fallback.voice='{d}/v.onnx'", ["fallback.voice = ", "is a folder", "check fallback.voice"]),
        (None, "fallback.voice='{d}/gone.onnx'", ["fallback.voice = ", "file not found", "check fallback.voice"]),
        ("voice-no-json:v.onnx", "fallback.voice='{d}/v.onnx'", ["v.onnx.json", "file not found"]),
        ("voice-bad-json:v.onnx", "fallback.voice='{d}/v.onnx'", ["not valid JSON"]),
        ("voice-wrong-json:v.onnx", "fallback.voice='{d}/v.onnx'", ["not a Piper voice config"]),
        ("text:v.onnx", "fallback.voice='{d}/v.onnx'", ["v.onnx: not an ONNX model"]),
        (None, "fallback.voice='{d}/voices/'", ["expected a voice name like en_US-joe-medium or a path"]),
        (None, "fallback.voice=de_DE-thorsten-medium", ["run scripts/fetch-models --voice de_DE-thorsten-medium"]),
        ("dir:models/piper/de_DE-x.onnx", "fallback.voice=de_DE-x", ["is a folder", "fetch-models --voice de_DE-x"]),
        # TLS files for the broker
        (None, "mqtt.ca_file='{d}/ca.pem'", ["mqtt.ca_file = ", "ca.pem", "file not found", "PEM"]),
        ("text:ca.pem", "mqtt.ca_file='{d}/ca.pem'", ["mqtt TLS files unusable", "mqtt.ca_file"]),
        ("text:c.pem", "mqtt.cert_file='{d}/c.pem'", ["set both for a client certificate, or neither"]),
    ],
)
def test_each_unusable_file_names_key_path_and_fix(
    files: Path, make: str | None, override: str, words: list[str]
) -> None:
    if make:
        _make(files, make)
    overrides = [override.format(d=files)]
    if override.startswith("mqtt."):
        overrides += ["mqtt.host=broker.invalid", "mqtt.tls=true"]
    message = problem(files, *overrides)
    assert message.startswith("files named in the configuration are unusable:")
    for w in words:
        assert w.format(d=files) in message, message


def _make(d: Path, spec: str) -> None:
    kind, _, name = spec.partition(":")
    path = d / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dir":
        path.mkdir()
    elif kind == "text":
        path.write_text("hello, not what you think\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "wav":
        write_wav(path)
    elif kind == "empty-wav":
        write_wav(path, frames=0)
    elif kind == "cut-onnx":
        path.write_bytes((d / "my_word.onnx").read_bytes()[:5000])
    elif kind.startswith("voice"):
        path.symlink_to(d / "voice.onnx")
        json_path = path.with_name(path.name + ".json")
        if kind == "voice-bad-json":
            json_path.write_text("{not json")
        elif kind == "voice-wrong-json":
            json_path.write_text('{"language": "en"}')
    else:
        raise AssertionError(kind)


def test_every_problem_is_listed_at_once(files: Path) -> None:
    message = problem(files, "chimes.wake='/nope/a.wav'", "audio.input='wav:/nope/b.wav'", "fallback.voice='/x.onnx'")
    assert "chimes.wake" in message and "audio.input" in message and "fallback.voice" in message


def test_the_default_voice_not_fetched_yet_is_not_a_config_error(files: Path) -> None:
    """Models not fetched yet: the daemon starts (cloud only) and `hark check` says "run scripts/fetch-models"."""
    assert load(files).fallback.voice == "en_US-joe-medium"


@pytest.mark.skipif(ROOT, reason="root reads files whatever their mode")
@pytest.mark.parametrize("key", ["chimes.wake", "fallback.voice"])
def test_an_unreadable_file_is_named_with_the_fix(files: Path, key: str) -> None:
    name = "ding.wav" if key == "chimes.wake" else "voice.onnx.json"
    (files / name).chmod(0)
    value = files / ("ding.wav" if key == "chimes.wake" else "voice.onnx")
    assert "permission denied" in problem(files, f"{key}={str(value)!r}")


@pytest.mark.skipif(ROOT, reason="root writes anywhere")
def test_a_wav_output_folder_that_is_not_writable_is_named(files: Path) -> None:
    (files / "ro").mkdir(mode=0o555)
    assert "not writable" in problem(files, f"audio.output='wav:{files / 'ro' / 'out.wav'}'")


def test_a_relative_wake_model_is_also_found_in_the_models_folder(files: Path) -> None:
    (files / "models" / "openwakeword").mkdir(parents=True)
    shutil.copy(files / "my_word.onnx", files / "models" / "openwakeword" / "custom.onnx")
    assert load(files, "wake.models=['custom.onnx']").wake.models[0].name == "custom.onnx"


# --- the config file itself -----------------------------------------------------------------------------------


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf[audio]\nvolume = 33\n")
    assert config_file.load(path).audio.volume == 33


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[audio]\nvolume = 33\n".encode("utf-16"), "UTF-16 (it starts with a UTF-16 byte-order mark)"),
        (b"[audio]\ninput = '\xff'\n", "not UTF-8 text (bad byte at offset 17); save it as UTF-8"),
        (b"[audio]\nvolume = 1" + b"0" * 5000 + b"\n", "a value cannot be read"),
        (b"[realtime]\nconnect_timeout = inf\n", "realtime.connect_timeout = inf: Input should be a finite number"),
        (b"[fallback]\nvolume = nan\n", "fallback.volume = nan: Input should be a finite number"),
        (b"[wake]\nthreshold = 1e999\n", "wake.threshold = inf"),
        (b'"line\\nbreak" = 1\n', "'line\\nbreak': unknown key"),
        (b"[audio]\ninput = '" + b"x" * 10_000 + b"'\nvolume = '" + b"y" * 10_000 + b"'\n", "audio.volume = 'yyyy"),
        (b"x" * (1024 * 1024 + 1), "is larger than 1 MB"),
    ],
)
def test_odd_config_files_are_named_not_tracebacks(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        config_file.load(path)
    assert expected in str(err.value)
    assert len(str(err.value)) < 1000  # a 10 KB value is cut short in the message


def test_an_empty_config_file_is_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("")
    assert config_file.load(tmp_path / "config.toml") == Settings()


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("folder", "is a folder; expected a TOML file"),
        ("/dev/zero", "is larger than 1 MB"),
        ("", "is a folder; expected a TOML file"),
    ],
)
def test_a_config_path_that_is_not_a_file_is_named(tmp_path: Path, where: str, expected: str) -> None:
    path = tmp_path if where == "folder" else Path(where)
    with pytest.raises(ConfigError, match=expected):
        config_file.load(path)


def test_a_huge_number_in_set_is_named() -> None:
    with pytest.raises(ConfigError, match=r"--set audio.volume=…: the value cannot be read"):
        config_file.load(REPO / "config.toml", ["audio.volume=1" + "0" * 5000])


# --- through the command line: exit 78, and `hark check` says the same -------------------------------------------


def hark(*args: str, models: Path) -> subprocess.CompletedProcess[str]:
    return run_hark(*args, env={**os.environ, "HARK_MODELS_DIR": str(models)})


def test_run_and_check_exit_78_with_the_same_message(files: Path, models_dir: Path) -> None:
    _make(files, "text:bad.wav")
    args = ["--config", str(files / "config.toml"), "--set", f"chimes.wake='{files / 'bad.wav'}'"]
    run = hark(*args, "run", "--set", f"audio.output='wav:{files / 'nope' / 'o.wav'}'", models=models_dir)
    assert run.returncode == 78, run.stderr
    assert "Traceback" not in run.stderr
    chime_line = next(line.strip() for line in run.stderr.splitlines() if "chimes.wake" in line)
    assert "not a readable PCM WAV" in chime_line and "audio.output = " in run.stderr
    check = hark(*args, "check", "--set", f"audio.output='wav:{files / 'nope' / 'o.wav'}'", models=models_dir)
    assert check.returncode == 78, check.stdout + check.stderr
    assert f"✗ {chime_line}" in check.stdout
    assert "✗ audio.output = " in check.stdout
