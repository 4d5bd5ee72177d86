"""Configuration: the shipped file is the defaults, and every kind of mistake is named and exits 78."""

from __future__ import annotations

import wave
from pathlib import Path

import pytest

from daemon.config import loader as config_file
from daemon.config.settings import ConfigError, Secrets, Settings
from tests.harness import hark

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_toml_is_exactly_the_defaults() -> None:
    assert config_file.load(REPO / "config.toml") == Settings()


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[wake]\ntreshold = 0.5", "wake.treshold: unknown key (did you mean wake.threshold?)"),
        ("[waek]\nthreshold = 0.5", "waek: unknown key (did you mean wake?)"),
        ("[wake]\nthreshold = 1.5", "wake.threshold = 1.5: Input should be less than or equal to 1"),
        ('[audio]\nvolume = "loud"', "audio.volume = 'loud': Input should be a valid integer"),
        ("[audio]\nvolume = 101", "audio.volume = 101: Input should be less than or equal to 100"),
        ('[wake]\nmodels = ["hey_siri"]', "wake.models.0.name = 'hey_siri': expected one of hey_jarvis"),
        ('[realtime]\nturn_detection = "remote"', "realtime.turn_detection = 'remote': Input should be 'local'"),
        ('[realtime]\nurl = "http://x"', 'expected a websocket URL starting with "ws://" or "wss://"'),
        ('[mqtt]\nbase_topic = "hark/#"', "mqtt.base_topic = 'hark/#': expected a plain topic without wildcards"),
        ('[[tools]]\nname = "x"\nparameters = {}', "tools.0.parameters = {}: expected a JSON schema object"),
        ('[[tools]]\nname = "bad name"', "tools.0.name = 'bad name': String should match pattern"),
        ('[[tools]]\nname = "a"\n[[tools]]\nname = "a"', "tool names must be unique; repeated: a"),
        (
            "[endpoint]\nend_silence_ms = 10",
            "endpoint.end_silence_ms = 10: Input should be greater than or equal to 90",
        ),
        ('[realtime]\napi_key = "sk-123"', "realtime.api_key: secrets are not read from config files"),
        ('[mqtt]\npassword = "hunter2"', "mqtt.password: secrets are not read from config files"),
        ("[wake\n", "not valid TOML"),
        ("[audio]\nvolume = true", "audio.volume = True: expected a number or text, not true/false"),
        ("[wake]\nthreshold = false", "wake.threshold = False: expected a number or text, not true/false"),
        ("[fallback]\nvoice = true", "fallback.voice = True: expected a number or text, not true/false"),
        ("[audio]\ninput = true", "audio.input = True: expected a number or text"),
    ],
)
def test_bad_config_names_key_value_and_expectation(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as err:
        config_file.load(path)
    assert expected in str(err.value)
    assert "sk-123" not in str(err.value) and "hunter2" not in str(err.value)


def test_set_overrides_parse_toml_values_and_reject_nonsense() -> None:
    s = config_file.load(
        REPO / "config.toml",
        [
            "wake.threshold=0.6",
            "audio.input=wav:/tmp/a.wav",
            'wake.models=["alexa", "hey_jarvis"]',
            "fallback.messages.timeout=Too slow",
        ],
    )
    assert s.wake.threshold == 0.6 and s.audio.input == "wav:/tmp/a.wav"
    assert [m.name for m in s.wake.models] == ["alexa", "hey_jarvis"]
    assert s.fallback.messages.timeout == "Too slow"
    with pytest.raises(ConfigError, match="expected section.key=value"):
        config_file.load(REPO / "config.toml", ["threshold"])
    with pytest.raises(ConfigError, match=r"wake\.threshold = 'high'"):
        config_file.load(REPO / "config.toml", ["wake.threshold=high"])


def test_a_device_index_may_be_written_as_a_number() -> None:
    s = config_file.load(REPO / "config.toml", ["audio.input=3", "audio.output=0"])
    assert (s.audio.input, s.audio.output) == ("3", "0")


def test_secrets_come_from_the_environment_and_never_show() -> None:
    s = Secrets.from_env({"OPENAI_API_KEY": "sk-live-abc", "HARK_MQTT_PASSWORD": "pw"})
    assert s.openai_api_key == "sk-live-abc"
    assert "sk-live-abc" not in repr(s) and "pw" not in str(s)


@pytest.mark.parametrize("where", ["before", "after"])
def test_hark_exits_78_on_a_bad_config(tmp_path: Path, where: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[audio]\nvolum = 50\n")
    args = ["--config", str(path), "check"] if where == "before" else ["check", "--config", str(path)]
    proc = hark(*args)
    assert proc.returncode == 78
    assert "audio.volum: unknown key (did you mean audio.volume?)" in proc.stderr


def test_hark_exits_78_on_a_bad_override() -> None:
    proc = hark("--set", "audio.volume=loud", "check")
    assert proc.returncode == 78 and "audio.volume = 'loud'" in proc.stderr


def test_hark_version_and_help() -> None:
    assert hark("--version").stdout.startswith("hark ")
    assert "demo" in hark("--help").stdout


def test_hark_check_names_missing_models_with_the_fix(tmp_path: Path) -> None:
    out = tmp_path / "o.wav"
    with wave.open(str(out), "wb") as w:  # the wav: input must exist: an unusable one would exit 78 instead
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(bytes(3200))
    proc = hark(
        "--set",
        f'paths.models="{tmp_path}"',
        "--set",
        f'audio.output="wav:{out}"',
        "--set",
        f'audio.input="wav:{out}"',
        "check",
    )
    assert proc.returncode == 1
    assert "✗" in proc.stdout and "run scripts/fetch-models" in proc.stdout
