"""Everything the daemon tells the outside world, one frozen dataclass per kind of event.

Why types and not strings: the trace, MQTT, metrics and systemd STATUS all subscribe to these (see
daemon.observe.bus), so a renamed or reshaped event is a type error that mypy catches, not a dashboard that
silently stops updating. `NAME` is the `event` key of the JSON-lines trace; `record()` gives the trace line
exactly as readers of earlier traces know it (fields set to None are left out).

The listening detections (wake word, start/end of speech) are events too: the detectors return them and
the assistant publishes them as they are. Each carries the input sample offset, so the trace lines every
decision up against the true audio.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event: `t` is monotonic seconds when it happened."""

    NAME: ClassVar[str] = ""
    t: float = field(default_factory=time.monotonic, kw_only=True, compare=False, repr=False)

    def data(self) -> dict[str, Any]:
        """The event's fields as the trace records them (None = not recorded)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "t"}

    def record(self) -> dict[str, Any]:
        """The JSON-lines trace record: {"t", "event", **fields}."""
        out: dict[str, Any] = {"t": round(self.t, 6), "event": self.NAME}
        out.update((k, v) for k, v in self.data().items() if v is not None)
        return out


# --- what the listening parts detect -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WakeDetected(Event):
    """A wake model crossed its threshold for `trigger_level` frames; `sample` = offset of that frame;
    `state` = the speaker's state when it was heard (set by the assistant)."""

    NAME: ClassVar[str] = "wake_detected"
    model: str
    score: float
    sample: int
    state: str | None = None


@dataclass(frozen=True, slots=True)
class SpeechStarted(Event):
    NAME: ClassVar[str] = "speech_started"
    sample: int


@dataclass(frozen=True, slots=True)
class SpeechEnded(Event):
    """End of the utterance: `sample` is where trailing silence began (where the voice stopped);
    `decided_sample` is the input sample at which the end was decided (so `decided_sample - sample` is what
    the decision waited); `reason`: `model` (the turn model judged the sentence finished), `silence` (the
    silence rule: end_silence_ms, or the turn model's ceiling), `max_length` (max_utterance_s).
    `timed_out` (= reason `max_length`) stays for readers of earlier traces."""

    NAME: ClassVar[str] = "speech_ended"
    sample: int
    timed_out: bool = False
    reason: Literal["model", "silence", "max_length"] | None = None
    decided_sample: int | None = None


@dataclass(frozen=True, slots=True)
class TurnJudged(Event):
    """The turn model answered during a pause: `probability` that the request is finished, after
    `silence_ms` of silence; `inference_ms` = features + model in the worker thread; `wait_ms` = from asking
    to the answer on the loop (adds the thread hop and any queueing behind other inference)."""

    NAME: ClassVar[str] = "turn_judged"
    probability: float
    silence_ms: int
    inference_ms: float
    wait_ms: float
    sample: int
    """The input sample up to which the model heard the request."""
    unfinished_word: bool | None = None
    """The request so far ends on a word no request ends on (endpoint.turn_unfinished_words): the model's
    "finished" does not end it. None: the words were not consulted (turn_words = "none", or they failed)."""
    words_lag_ms: float | None = None
    """From asking the word recognizer to its answer (~0 when it keeps up with the microphone)."""
    end_probability: float | None = None
    """The language model's P(end of sentence | the last two words heard) (endpoint.turn_min_end_probability)."""
    unlikely_end: bool | None = None
    """end_probability is below endpoint.turn_min_end_probability: the bar is turn_unlikely_end_threshold."""


@dataclass(frozen=True, slots=True)
class NoSpeech(Event):
    """Nothing was said within the start-of-speech timeout."""

    NAME: ClassVar[str] = "no_speech"
    sample: int


# --- the state machine ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateChanged(Event):
    NAME: ClassVar[str] = "state"
    before: str
    after: str
    trigger: str
    reason: str = ""

    def data(self) -> dict[str, Any]:
        return {"from": self.before, "to": self.after, "trigger": self.trigger, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Interrupted(Event):
    """An answer or announcement was cut (barge-in, stop, mute, shutdown) after `played_ms` of it."""

    NAME: ClassVar[str] = "interrupted"
    reason: str
    played_ms: int


@dataclass(frozen=True, slots=True)
class Announcement(Event):
    NAME: ClassVar[str] = "announcement"
    text: str
    priority: bool


@dataclass(frozen=True, slots=True)
class Error(Event):
    """Something the user or the administrator should know went wrong; `message` says what and the fix."""

    NAME: ClassVar[str] = "error"
    code: str
    message: str


# --- what the household chose ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MuteChanged(Event):
    NAME: ClassVar[str] = "mute"
    on: bool


@dataclass(frozen=True, slots=True)
class VolumeChanged(Event):
    NAME: ClassVar[str] = "volume"
    percent: int


@dataclass(frozen=True, slots=True)
class WakeEnabledChanged(Event):
    NAME: ClassVar[str] = "wake_enabled"
    on: bool


# --- audio devices and playback --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceLostEvent(Event):
    NAME: ClassVar[str] = "device_lost"
    detail: str
    kind: Literal["input", "output"] | None = None
    device: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceRestoredEvent(Event):
    NAME: ClassVar[str] = "device_restored"
    detail: str
    kind: Literal["input", "output"] | None = None
    device: str | None = None


@dataclass(frozen=True, slots=True)
class PlaybackStarted(Event):
    NAME: ClassVar[str] = "playback_started"
    rate_hz: int


@dataclass(frozen=True, slots=True)
class PlaybackStopped(Event):
    """`reason`: "drained" (all of it played) or "stopped" (cut)."""

    NAME: ClassVar[str] = "playback_stopped"
    played_ms: int
    reason: Literal["drained", "stopped"]


# --- the answer ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transcript(Event):
    """A final transcript; `role` user (what was asked) or assistant (what was answered)."""

    NAME: ClassVar[str] = "transcript"
    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True, slots=True)
class TranscriptDelta(Event):
    NAME: ClassVar[str] = "transcript_delta"
    role: Literal["user", "assistant"]
    text: str


@dataclass(frozen=True, slots=True)
class Fallback(Event):
    """The local voice answered instead of the cloud; `reason` is a FallbackReason value."""

    NAME: ClassVar[str] = "fallback"
    reason: str
    text: str


@dataclass(frozen=True, slots=True)
class CommandRecognized(Event):
    """A declared command was recognized on the device and is being carried out (daemon.intents)."""

    NAME: ClassVar[str] = "command_recognized"
    intent: str
    slots: dict[str, Any]
    confidence: float
    ms: float
    """Recognizer time for the whole request."""


@dataclass(frozen=True, slots=True)
class BreakerChanged(Event):
    NAME: ClassVar[str] = "breaker"
    state: Literal["open", "closed"]


# --- the Realtime session ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RealtimeConnecting(Event):
    NAME: ClassVar[str] = "realtime_connecting"
    model: str
    url: str


@dataclass(frozen=True, slots=True)
class RealtimeConnected(Event):
    NAME: ClassVar[str] = "realtime_connected"
    setup_ms: float


@dataclass(frozen=True, slots=True)
class RealtimeClosed(Event):
    NAME: ClassVar[str] = "realtime_closed"
    reason: str


@dataclass(frozen=True, slots=True)
class RealtimeError(Event):
    """The cloud refused or failed: `code` (server code, http_<status> or our reason), `message` for people."""

    NAME: ClassVar[str] = "realtime_error"
    code: str
    message: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class AudioAppended(Event):
    """The first `input_audio_buffer.append` of a turn left the device (the privacy tests watch this)."""

    NAME: ClassVar[str] = "audio_appended"
    bytes: int


@dataclass(frozen=True, slots=True)
class Committed(Event):
    """The request was committed: by us (local endpointing: `bytes`, `audio_ms`) or by the server's VAD."""

    NAME: ClassVar[str] = "commit"
    bytes: int | None = None
    audio_ms: int | None = None
    by: Literal["server"] | None = None


@dataclass(frozen=True, slots=True)
class ResponseCreated(Event):
    NAME: ClassVar[str] = "response_created"
    response_id: str


@dataclass(frozen=True, slots=True)
class FirstDelta(Event):
    """The first answer audio (or text) arrived `ms` after the request was sent."""

    NAME: ClassVar[str] = "first_delta"
    ms: float


@dataclass(frozen=True, slots=True)
class ResponseDone(Event):
    NAME: ClassVar[str] = "response_done"
    status: str
    usage: dict[str, Any]
    cost_usd: float


# --- the cascade backend (speech-to-text → chat model → voice) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class CascadeRequest(Event):
    """A cascade stage sent a request (`stage` stt, llm or tts) to `url`: the privacy tests watch these."""

    NAME: ClassVar[str] = "cascade_request"
    stage: Literal["stt", "llm", "tts"]
    model: str
    url: str


@dataclass(frozen=True, slots=True)
class CascadeFirst(Event):
    """A stage's first result (transcript, answer token, speech audio) came `ms` after its request."""

    NAME: ClassVar[str] = "cascade_first"
    stage: Literal["stt", "llm", "tts"]
    ms: float


@dataclass(frozen=True, slots=True)
class CascadeUsage(Event):
    """What one stage used for one request and its estimated cost (priced from [cost])."""

    NAME: ClassVar[str] = "cascade_usage"
    stage: Literal["stt", "llm", "tts"]
    model: str
    cost_usd: float
    audio_s: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    characters: int | None = None


@dataclass(frozen=True, slots=True)
class Arbitration(Event):
    """Wake arbitration over MQTT ended: `won` = this speaker answers; `winner` and every claim considered
    (device, level_dbfs, score), best first."""

    NAME: ClassVar[str] = "arbitration"
    won: bool
    winner: str
    claims: tuple[tuple[str, float, float], ...]
