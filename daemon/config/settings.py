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

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

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
    # allow_inf_nan=False: TOML has inf and nan; no setting means anything with them (a timeout of inf or nan
    # would wait forever or compare false everywhere)
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        """pydantic reads true as 1: `volume = true` would mean 1 %. Only a true/false setting takes true/false."""
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(v, bool) and field is not None and field.annotation is not bool:
            raise ValueError("expected a number or text, not true/false")
        return v


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
    echo_cancel: Literal["auto", "on", "off"] = "auto"
    """Cancel the speaker's own sound in the microphone (WebRTC AEC3, what the speaker plays as reference).
    "auto" = on unless the capture device already does it (a USB speakerphone, a ReSpeaker/XMOS board, a
    PulseAudio/PipeWire echo-cancel source). Never applied to a wav: input."""

    @field_validator("input", "output", mode="before")
    @classmethod
    def _index_as_text(cls, v: Any) -> Any:
        """`input = 3` (a device index, as `hark devices` lists them) means "3"."""
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

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
    """Stricter threshold while an answer plays, so the speaker does not wake itself (without echo
    cancellation)."""
    responding_threshold_aec: Unit | None = None
    """The threshold while an answer plays and echo cancellation is on; unset = the normal threshold (the
    canceller removes the answer from what the detector hears)."""
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


UNFINISHED_WORDS = (
    *("a", "an", "the", "my", "your", "our", "their", "its"),
    *("to", "for", "of", "in", "at", "by", "with", "from", "into", "about", "than"),
    *("and", "or", "but"),
)
"""Articles, possessives, prepositions and conjunctions: no request ends on them. Words that often do end one
are left out ("on", "off", "up": "turn the lights on"; "this", "that", "it", "too", "two")."""


class EndpointSettings(_Section):
    aggressiveness: Annotated[int, Field(ge=0, le=3)] = 2
    """webrtcvad aggressiveness: 0 keeps most audio as speech, 3 filters hardest."""
    start_timeout_s: PositiveS = 5.0
    """No speech this long after the wake word → back to idle."""
    end_silence_ms: Annotated[int, Field(ge=90, le=5000)] = 700
    """Silence that ends an utterance when no turn model decides (turn_model = "none", the model file missing
    or corrupt, or a judgement that failed)."""
    max_utterance_s: PositiveS = 15.0
    """An utterance is cut here even if the speaker goes on."""
    preroll_ms: Annotated[int, Field(ge=0, le=2000)] = 300
    """Audio kept from before speech start, so the first syllable is not clipped."""
    speech_start_ms: Annotated[int, Field(ge=30, le=1000)] = 120
    """Voiced audio needed before speech counts as started (ignores clicks)."""
    turn_model: Literal["smart-turn", "none"] = "smart-turn"
    """End of turn: "smart-turn" asks Smart Turn v3 (models/smart-turn/, fetched by scripts/fetch-models)
    whether the sentence is finished once the person pauses; "none" ends after end_silence_ms of silence."""
    turn_min_silence_ms: Annotated[int, Field(ge=30, le=5000)] = 200
    """Silence before the model is first asked: shorter gaps are just between words."""
    turn_recheck_ms: Annotated[int, Field(ge=0, le=5000)] = 0
    """While the model says "unfinished", ask again each time the silence has grown by this much; 0 = ask once
    per pause (the model hears the silence too: after ~500 ms of it nearly everything sounds finished)."""
    turn_max_silence_ms: Annotated[int, Field(ge=90, le=10000)] = 1500
    """The ceiling: this much silence ends the request whatever the model says."""
    turn_threshold: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5
    """A probability above this means "finished" (0.5 is the model's own decision boundary)."""
    turn_words: Literal["pocketsphinx", "none"] = "pocketsphinx"
    """With a turn model: "pocketsphinx" also listens to the words (PocketSphinx's en-US model, in its own
    thread, while a request is heard); a request whose last word so far is in turn_unfinished_words is not
    ended by the model, only by speech going on or by turn_max_silence_ms. "none" = the model alone."""
    turn_unfinished_words: list[str] = Field(default_factory=lambda: list(UNFINISHED_WORDS))
    """Words a request cannot end on (lower case, as PocketSphinx's dictionary spells them)."""
    turn_min_end_probability: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    """With the words: while the language model's P(end of sentence | the last two words heard) is below this
    ("the weather we", "the living"), the model's bar is turn_unlikely_end_threshold; 0 = off."""
    turn_unlikely_end_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.95
    """The bar for such a request (used when above turn_threshold); 1.0 = held, like an unfinished word."""

    @field_validator("turn_unfinished_words")
    @classmethod
    def _one_lower_case_word_each(cls, v: list[str]) -> list[str]:
        bad = [w for w in v if not w or w != w.lower() or any(c.isspace() for c in w)]
        if bad:
            raise ValueError(
                f"turn_unfinished_words must be single lower-case words (as the recognizer spells them), got {bad}"
            )
        return v

    @model_validator(mode="after")
    def _turn_silences(self) -> EndpointSettings:
        if self.turn_min_silence_ms > self.turn_max_silence_ms:
            raise ValueError(
                f"turn_min_silence_ms = {self.turn_min_silence_ms} must not exceed turn_max_silence_ms = "
                f"{self.turn_max_silence_ms} (the model is asked before the ceiling ends the request)"
            )
        return self


class ConversationSettings(_Section):
    followup_seconds: Annotated[float, Field(ge=0)] = 4.0
    """After an answer, listen this long without a wake word (0 = off)."""
    responder: Literal["cloud", "chime"] = "cloud"
    """"cloud": a model answers (`backend` says which; local voice as fallback). "chime": every request is
    answered with the done chime — tries the microphone, wake word and endpointing with no cloud and no voice."""
    backend: Literal["realtime", "cascade"] = "realtime"
    """With responder = "cloud": "realtime" = the OpenAI Realtime API ([realtime]); "cascade" = speech-to-text,
    a chat model and a voice, each through any OpenAI-compatible server ([cascade])."""


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


class CascadeStage(_Section):
    """One OpenAI-compatible endpoint of the cascade (speech-to-text, chat model or voice)."""

    base_url: str = ""
    """API base URL with its /v1, e.g. "http://127.0.0.1:11434/v1" (Ollama); "" = OpenAI's."""
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding this server's key; "" = none (a local server)."""
    timeout_s: PositiveS = 8.0
    """Longest wait for the first result and between two pieces of a stream, in seconds."""

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError('expected an HTTP URL such as "http://127.0.0.1:8000/v1" ("" = OpenAI\'s)')
        return v.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if v and not v.replace("_", "").isalnum():
            raise ValueError('expected the NAME of an environment variable (e.g. "OPENAI_API_KEY"), not the key')
        return v


class CascadeSttSettings(CascadeStage):
    model: str = "gpt-4o-mini-transcribe"
    language: str = "en"
    """ISO-639-1 hint ("" = let the model detect it)."""
    stream: Literal["auto", "on", "off"] = "auto"
    """Stream the transcript (`transcript.text.delta`): "auto" = for gpt-4o(-mini)-transcribe models only."""

    @property
    def streams(self) -> bool:
        return self.stream == "on" or (self.stream == "auto" and "4o" in self.model and "transcribe" in self.model)


class CascadeLlmSettings(CascadeStage):
    model: str = "gpt-4.1-mini"
    instructions: str = ""
    """System prompt; "" = realtime.instructions (one persona whichever backend answers)."""
    max_tokens: Annotated[int, Field(ge=1, le=16384)] = 512
    max_tool_rounds: Annotated[int, Field(ge=1, le=10)] = 4
    """Tool calls answered per request before the model must answer in words."""


class CascadeTtsSettings(CascadeStage):
    model: str = "gpt-4o-mini-tts"
    voice: str = "marin"
    instructions: str = ""
    """How to speak (gpt-4o-mini-tts only; "" = none)."""
    speed: Annotated[float, Field(ge=0.25, le=4.0)] = 1.0
    response_format: Literal["pcm"] = "pcm"
    """Raw 24 kHz PCM16, streamed: the only format played without decoding."""


class CascadeSettings(_Section):
    """conversation.backend = "cascade": speech-to-text → chat model → voice, each its own server."""

    stt: CascadeSttSettings = CascadeSttSettings()
    llm: CascadeLlmSettings = CascadeLlmSettings()
    tts: Literal["piper"] | CascadeTtsSettings = "piper"
    """"piper": the local voice (fallback.voice) speaks each sentence as the model writes it; or a table with
    base_url, model, voice, ... for an OpenAI-compatible /v1/audio/speech."""
    history_idle_s: Annotated[float, Field(ge=0)] = 120.0
    """Keep the conversation this long after the last turn (follow-ups remember); 0 = every request alone."""
    history_turns: Annotated[int, Field(ge=0, le=100)] = 10
    """Most recent request/answer pairs sent with each request (older ones are dropped)."""
    warm_connections: bool = True
    """At the wake word, open each stage's connection with a GET /models (no audio, no text), so the
    handshakes are done before the user stops speaking; false = nothing is sent before the end of the turn."""


class CostSettings(_Section):
    """USD per million tokens (gpt-realtime list prices) and an optional daily cap."""

    audio_in_per_mtok: Annotated[float, Field(ge=0)] = 32.0
    audio_out_per_mtok: Annotated[float, Field(ge=0)] = 64.0
    text_in_per_mtok: Annotated[float, Field(ge=0)] = 4.0
    text_out_per_mtok: Annotated[float, Field(ge=0)] = 16.0
    cached_in_per_mtok: Annotated[float, Field(ge=0)] = 0.4
    stt_per_minute: Annotated[float, Field(ge=0)] = 0.003
    """Cascade speech-to-text, USD per minute of request audio (gpt-4o-mini-transcribe; 0 for a local server)."""
    llm_in_per_mtok: Annotated[float, Field(ge=0)] = 0.4
    llm_out_per_mtok: Annotated[float, Field(ge=0)] = 1.6
    """Cascade chat model, USD per million tokens (gpt-4.1-mini; 0 for Ollama / llama.cpp)."""
    tts_per_minute: Annotated[float, Field(ge=0)] = 0.015
    """Cascade remote voice, USD per minute of speech (gpt-4o-mini-tts; Piper costs nothing)."""
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


# --- local commands --------------------------------------------------------------------------------------


ListValues = list[str] | dict[str, str | int | float | bool]


class CommandIntent(_Section):
    """One household command: what may be said, which tool it calls with which arguments, what is said back."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")]
    sentences: list[str] = Field(min_length=1)
    """Home Assistant sentence templates: "turn {state} [the] {room} lights", (a|b) alternatives, [optional]."""
    tool: str
    """The [[tools]] entry it calls, exactly as the cloud model's tool call would."""
    arguments: dict[str, Any] = Field(default_factory=dict)
    """The tool's arguments: "{slot}" alone is the slot's value (its type kept), other strings are filled in
    ("{room} lights"), anything else is sent as given."""
    say: str = ""
    """Spoken confirmation, e.g. "{room} lights {state}." ("" = the done chime's silence: nothing said)."""


class CommandSettings(_Section):
    local: Literal["off", "offline", "first"] = "off"
    """"off": the cloud answers everything. "offline": when the cloud can't answer, a declared command is
    still carried out (instead of the apology). "first": a declared command is carried out on the device at
    once and never reaches the cloud; anything else goes to the cloud."""
    min_score: Annotated[float, Field(le=0)] = -4.5
    """How well the sentence must fit the audio to be acted on: its acoustic log-likelihood ratio per 10 ms
    of speech against a free phone loop (0 = as well as any sound sequence). Lower accepts more (and more
    out-of-domain speech); -4.5 acted on no out-of-domain test request and on 1.4 % of a held-out voice set's
    (scripts/bench_commands.py)."""
    lists: dict[str, ListValues] = Field(default_factory=dict)
    """Slot values per {name}: a list of phrases (the value is the phrase) or a table phrase → value
    (minutes = {five = 5, ten = 10})."""
    intents: list[CommandIntent] = Field(default_factory=list)

    @field_validator("lists")
    @classmethod
    def _values(cls, v: dict[str, ListValues]) -> dict[str, ListValues]:
        for name, values in v.items():
            if not values:
                raise ValueError(
                    f'list {name!r} has no values; give the phrases it stands for, e.g. {name} = ["kitchen"]'
                )
        return v


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
    cascade: CascadeSettings = CascadeSettings()
    cost: CostSettings = CostSettings()
    tools: list[ToolSettings] = Field(default_factory=list)
    fallback: FallbackSettings = FallbackSettings()
    commands: CommandSettings = CommandSettings()
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

    def api_key(self, env_name: str) -> str:
        """The key a cascade stage names by its variable (`api_key_env`): OPENAI_API_KEY is the one read at
        start; any other name is read from the environment now. "" (a local server) gives ""."""
        if not env_name:
            return ""
        if env_name == "OPENAI_API_KEY":
            return self.openai_api_key
        return os.environ.get(env_name, "").strip()

    def __repr__(self) -> str:
        return (
            f"Secrets(openai_api_key={'<set>' if self.openai_api_key else '<unset>'}, "
            f"mqtt_password={'<set>' if self.mqtt_password else '<unset>'})"
        )

    __str__ = __repr__


def _topic_safe(name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return safe or "hark"
