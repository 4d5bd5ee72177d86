"""config.toml → frozen, validated settings.

Why pydantic: every error must name the key path, the value given and what was expected, and typos must be
rejected rather than silently ignored (``extra="forbid"``). Secrets never live here: they come from the
environment only (`Secrets`), so a config file can be shared or posted without leaking anything.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EX_CONFIG = 78
"""sysexits.h EX_CONFIG: systemd's RestartPreventExitStatus=78 keeps a bad config from restart-looping."""

BUILTIN_WAKE_MODELS = ("hey_jarvis", "alexa", "hey_mycroft", "hey_rhasspy")

Percent = Annotated[int, Field(ge=0, le=100)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveS = Annotated[float, Field(gt=0)]


class ConfigError(Exception):
    """Bad configuration: the message is meant for a person and names key, value and expectation."""

    exit_code = EX_CONFIG


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# --- audio ---------------------------------------------------------------------------------------------


class AudioSettings(_Section):
    input: str = "default"
    """"default", a PortAudio device index, a device-name substring, or "wav:PATH"."""
    output: str = "default"
    """Same forms as `input`; "wav:PATH" writes what would have been played."""
    realtime_pace: bool = True
    """With a wav: input, feed it at real-time speed (false = as fast as possible: tests, benchmarks)."""
    volume: Percent = 70
    """Initial software volume, 0–100 (a volume set over MQTT persists and wins)."""
    output_buffer_ms: Annotated[int, Field(ge=20, le=1000)] = 20
    """Audio queued before a stream starts playing, in ms. The Realtime API sends audio faster than real
    time, so the queue grows by itself after the first chunks; raise this on a jittery network."""
    reopen_min_s: PositiveS = 0.5
    reopen_max_s: PositiveS = 10.0
    """Backoff bounds for reopening a capture/playback device that failed or vanished."""

    @field_validator("input", "output")
    @classmethod
    def _device_spec(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError('expected "default", a device index, a name substring or "wav:PATH"')
        if v.startswith("wav:") and len(v) == 4:
            raise ValueError('"wav:" needs a path, e.g. "wav:/tmp/utterance.wav"')
        return v


class ChimeSettings(_Section):
    """Each chime: "builtin" (generated in code), "" (off) or a path to a WAV file."""

    wake: str = "builtin"
    done: str = "builtin"
    error: str = "builtin"


# --- listening -------------------------------------------------------------------------------------------


class WakeModel(_Section):
    name: str
    """A built-in model (hey_jarvis, alexa, hey_mycroft, hey_rhasspy) or a path to an .onnx file."""
    threshold: Unit | None = None
    trigger_level: Annotated[int, Field(ge=1, le=20)] | None = None
    refractory_s: Annotated[float, Field(ge=0)] | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v in BUILTIN_WAKE_MODELS or v.endswith(".onnx"):
            return v
        raise ValueError(f"expected one of {', '.join(BUILTIN_WAKE_MODELS)} or a path ending in .onnx")


class WakeSettings(_Section):
    models: list[WakeModel] = Field(default_factory=lambda: [WakeModel(name="hey_jarvis")], min_length=1)
    """Names or tables: ["hey_jarvis", {name = "alexa", threshold = 0.6}]."""
    threshold: Unit = 0.5
    """Score a frame must reach (per-model `threshold` overrides)."""
    trigger_level: Annotated[int, Field(ge=1, le=20)] = 1
    """Consecutive 80 ms frames over threshold before a detection."""
    refractory_s: Annotated[float, Field(ge=0)] = 2.0
    """After a detection the same model is ignored this long (one phrase = one detection)."""
    responding_threshold: Unit = 0.8
    """Stricter threshold while an answer plays, so the speaker does not wake itself."""
    enabled: bool = True
    """Wake-word detection on/off (also over MQTT; persisted)."""
    gate: Literal["vad", "off"] = "vad"
    """"vad": run the wake models only while webrtcvad hears a voice above `gate_floor_dbfs` (a quiet room
    costs almost no CPU; detections are the same). "off": score every 80 ms block."""
    gate_floor_dbfs: Annotated[float, Field(ge=-90, le=-10)] = -50.0
    """A 30 ms frame quieter than this (RMS, dBFS) never opens the gate: steady room noise stays out."""
    gate_hangover_s: Annotated[float, Field(ge=0.3, le=10)] = 1.0
    """The gate stays open this long after the last voiced frame (the score peaks just after the phrase)."""
    gate_preroll_s: Annotated[float, Field(ge=1.5, le=8)] = 2.0
    """Audio fed to the wake models when the gate opens: their features need ~2 s of context."""

    @field_validator("models", mode="before")
    @classmethod
    def _names_to_tables(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": m} if isinstance(m, str) else m for m in v]
        return v


class EndpointSettings(_Section):
    aggressiveness: Annotated[int, Field(ge=0, le=3)] = 2
    """webrtcvad aggressiveness: 0 keeps most audio as speech, 3 filters hardest."""
    start_timeout_s: PositiveS = 5.0
    """No speech this long after the wake word → back to idle."""
    end_silence_ms: Annotated[int, Field(ge=90, le=5000)] = 700
    """Silence that ends an utterance."""
    max_utterance_s: PositiveS = 15.0
    """An utterance is cut here even if the speaker goes on."""
    preroll_ms: Annotated[int, Field(ge=0, le=2000)] = 300
    """Audio kept from before speech start, so the first syllable is not clipped."""
    speech_start_ms: Annotated[int, Field(ge=30, le=1000)] = 120
    """Voiced audio needed before speech counts as started (ignores clicks)."""


class ConversationSettings(_Section):
    followup_seconds: Annotated[float, Field(ge=0)] = 4.0
    """After an answer, listen this long without a wake word (0 = off)."""
    responder: Literal["cloud", "chime"] = "cloud"
    """"cloud": the Realtime model (local voice as fallback). "chime": every request is answered with the
    done chime — tries the microphone, wake word and endpointing with no cloud and no voice."""


class AnnouncementSettings(_Section):
    queue_size: Annotated[int, Field(ge=1, le=100)] = 10
    """Announcements (`say`) that may wait while another plays or an answer runs. One more is refused with
    an MQTT `error` event (the older ones keep their place); a priority one makes room by dropping the newest
    ordinary one. `stop` empties the queue."""


# --- cloud ------------------------------------------------------------------------------------------------


class ToolSettings(_Section):
    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")]
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    """JSON schema of the arguments, as the Realtime API expects it."""
    mqtt_topic: str = ""
    """Publish the call here as JSON {call_id, name, arguments}."""
    response_topic: str = ""
    """Wait for the reply here (up to timeout_s) and give it to the model; empty = answer {"ok": true}."""
    timeout_s: PositiveS = 5.0

    @field_validator("parameters")
    @classmethod
    def _schema(cls, v: dict[str, Any]) -> dict[str, Any]:
        if v.get("type") != "object":
            raise ValueError('expected a JSON schema object with "type" = "object"')
        return v


class RealtimeSettings(_Section):
    model: str = "gpt-realtime"
    voice: str = "marin"
    instructions: str = (
        "You are Hark, a voice assistant in a home. Answer briefly and conversationally: one or two "
        "sentences, no lists or markdown. Speak the user's language."
    )
    url: str = ""
    """Websocket base URL (e.g. "wss://proxy.example/v1"); empty = OpenAI's."""
    language: str = "en"
    """ISO-639-1 hint for input transcription."""
    transcription_model: str = "gpt-4o-mini-transcribe"
    """Model that transcribes the user's audio for the trace/MQTT ("" = no input transcript)."""
    max_output_tokens: Annotated[int, Field(ge=1, le=4096)] | Literal["inf"] = 1024
    turn_detection: Literal["local", "server_vad", "semantic_vad"] = "local"
    output: Literal["audio", "text"] = "audio"
    """"text" = the model answers in text and the local Piper voice speaks it (cheaper)."""
    connect_timeout: PositiveS = 3.0
    response_timeout: PositiveS = 8.0
    """No first answer audio this long after the request ended → local fallback."""
    session_idle_seconds: Annotated[float, Field(ge=0)] = 120.0
    """Keep the session (and the conversation context) this long after the last turn."""

    @field_validator("url")
    @classmethod
    def _ws_url(cls, v: str) -> str:
        if v and not v.startswith(("ws://", "wss://")):
            raise ValueError('expected a websocket URL starting with "ws://" or "wss://"')
        return v.rstrip("/")


class CostSettings(_Section):
    """USD per million tokens (gpt-realtime list prices) and an optional daily cap."""

    audio_in_per_mtok: Annotated[float, Field(ge=0)] = 32.0
    audio_out_per_mtok: Annotated[float, Field(ge=0)] = 64.0
    text_in_per_mtok: Annotated[float, Field(ge=0)] = 4.0
    text_out_per_mtok: Annotated[float, Field(ge=0)] = 16.0
    cached_in_per_mtok: Annotated[float, Field(ge=0)] = 0.4
    daily_limit: Annotated[float, Field(ge=0)] = 0.0
    """Stop using the cloud for the rest of the day once this much was spent (0 = no cap)."""


class FallbackMessages(_Section):
    no_api_key: str = "I'm not connected to the cloud yet. Please add an API key."
    unreachable: str = "Sorry, I can't reach the internet right now."
    auth: str = "Sorry, the cloud service refused my key."
    dropped: str = "Sorry, I lost the connection."
    timeout: str = "Sorry, that took too long. Please try again."
    cost_limit: str = "I've reached today's spending limit."
    error: str = "Sorry, something went wrong."
    breaker_open: str = "Sorry, the cloud service is unavailable right now."


class FallbackSettings(_Section):
    voice: str = "en_US-joe-medium"
    """Piper voice: a name fetched by scripts/fetch-models, or a path to a .onnx voice."""
    load: Literal["start", "lazy"] = "start"
    volume: Annotated[float, Field(gt=0, le=1.0)] = 0.8
    """Piper renders at full scale; this scales it to sit with the cloud voice."""
    messages: FallbackMessages = FallbackMessages()
    breaker_failures: Annotated[int, Field(ge=1, le=100)] = 3
    """Consecutive cloud failures before answering locally at once."""
    probe_min_s: PositiveS = 5.0
    probe_max_s: PositiveS = 300.0


# --- home integration ------------------------------------------------------------------------------------


class MqttSettings(_Section):
    host: str = ""
    """Broker host; empty = MQTT off."""
    port: Annotated[int, Field(ge=1, le=65535)] = 1883
    client_id: str = ""
    """Default "hark-<device_id>"."""
    device_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]*$")] = ""
    """Default: the hostname (made topic-safe)."""
    base_topic: str = ""
    """Default "hark/<device_id>"."""
    username: str = ""
    """The password comes from the environment: HARK_MQTT_PASSWORD."""
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    tls_insecure: bool = False
    """Skip certificate host-name checks (never on by default)."""
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 60
    qos: Annotated[int, Field(ge=0, le=2)] = 1
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    publish_transcripts: bool = False
    max_payload_bytes: Annotated[int, Field(ge=64, le=1_000_000)] = 4096
    reconnect_min_s: PositiveS = 1.0
    reconnect_max_s: PositiveS = 60.0
    arbitration_ms: Annotated[int, Field(ge=0, le=2000)] = 0
    """With several speakers on one broker: after a wake word, wait this long for the others' claims; only the
    one that heard it loudest answers (e.g. 150; 0 = off: every speaker that hears it answers)."""
    arbitration_group: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")] = "home"
    """Speakers arbitrate with their group only (e.g. one group per floor): topic hark/arbitration/<group>."""

    @field_validator("base_topic", "discovery_prefix")
    @classmethod
    def _topic(cls, v: str) -> str:
        if any(c in v for c in "#+") or v.endswith("/"):
            raise ValueError("expected a plain topic without wildcards (#, +) or a trailing /")
        return v


class MetricsSettings(_Section):
    port: Annotated[int, Field(ge=0, le=65535)] = 0
    """Prometheus exporter port (0 = off)."""
    host: str = "127.0.0.1"


class DebugSettings(_Section):
    trace: str = ""
    """JSON-lines trace file ("" = off); --trace overrides."""


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class PathSettings(_Section):
    models: str = ""
    """Where scripts/fetch-models put the models; "" = $HARK_MODELS_DIR, else ./models of the checkout,
    else /opt/hark/models (the installer's)."""
    state: str = ""
    """Where mute/volume persist; "" = $STATE_DIRECTORY (systemd), else /var/lib/hark if writable, else
    ~/.local/state/hark."""


class Settings(_Section):
    audio: AudioSettings = AudioSettings()
    chimes: ChimeSettings = ChimeSettings()
    wake: WakeSettings = WakeSettings()
    endpoint: EndpointSettings = EndpointSettings()
    conversation: ConversationSettings = ConversationSettings()
    announcements: AnnouncementSettings = AnnouncementSettings()
    realtime: RealtimeSettings = RealtimeSettings()
    cost: CostSettings = CostSettings()
    tools: list[ToolSettings] = Field(default_factory=list)
    fallback: FallbackSettings = FallbackSettings()
    mqtt: MqttSettings = MqttSettings()
    metrics: MetricsSettings = MetricsSettings()
    debug: DebugSettings = DebugSettings()
    logging: LoggingSettings = LoggingSettings()
    paths: PathSettings = PathSettings()

    @model_validator(mode="after")
    def _unique_tools(self) -> Settings:
        names = [t.name for t in self.tools]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"tool names must be unique; repeated: {', '.join(sorted(dup))}")
        return self

    # Derived values live here so that every part computes them the same way.
    @property
    def device_id(self) -> str:
        return self.mqtt.device_id or _topic_safe(socket.gethostname())

    @property
    def base_topic(self) -> str:
        return self.mqtt.base_topic or f"hark/{self.device_id}"

    @property
    def models_dir(self) -> Path:
        if self.paths.models:
            return Path(self.paths.models).expanduser()
        if os.environ.get("HARK_MODELS_DIR"):
            return Path(os.environ["HARK_MODELS_DIR"])
        checkout = Path(__file__).resolve().parents[2] / "models"
        installed = Path("/opt/hark/models")  # where scripts/setup.sh puts them
        return installed if not checkout.exists() and installed.exists() else checkout

    @property
    def state_dir(self) -> Path:
        if self.paths.state:
            return Path(self.paths.state).expanduser()
        if os.environ.get("STATE_DIRECTORY"):
            return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
        installed = Path("/var/lib/hark")  # the service's StateDirectory: run by hand, share it when allowed
        if installed.is_dir() and os.access(installed, os.W_OK):
            return installed
        return Path.home() / ".local" / "state" / "hark"


@dataclass(frozen=True)
class Secrets:
    """Credentials from the environment only. `repr` never shows them."""

    openai_api_key: str = ""
    mqtt_password: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Secrets:
        env = dict(os.environ) if env is None else env
        return cls(env.get("OPENAI_API_KEY", "").strip(), env.get("HARK_MQTT_PASSWORD", ""))

    def __repr__(self) -> str:
        return (
            f"Secrets(openai_api_key={'<set>' if self.openai_api_key else '<unset>'}, "
            f"mqtt_password={'<set>' if self.mqtt_password else '<unset>'})"
        )

    __str__ = __repr__


def _topic_safe(name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return safe or "hark"
