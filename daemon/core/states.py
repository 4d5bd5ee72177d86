"""The one state machine: every transition, its guard and its deadline, in one table.

Pure logic, no I/O: the assistant feeds it triggers and acts on the transitions it returns. Only `handle()`
writes the state, and every accepted change goes to one listener (trace, MQTT, systemd STATUS). Illegal
triggers are rejected and logged, never half-applied. Active states carry a deadline, so a lost event
(a response that never ends, a stuck stream) cannot leave the speaker "stuck in responding".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

log = logging.getLogger(__name__)


class State(str, Enum):
    IDLE = "idle"
    """Waiting for the wake word; not one byte of audio leaves the device."""
    ARBITRATING = "arbitrating"
    """Heard the wake word and claimed it over MQTT; waiting `mqtt.arbitration_ms` for other speakers' claims.
    Nothing plays and no audio leaves the device; the audio meanwhile is kept for the winner."""
    LISTENING = "listening"
    """Capturing the request (after a wake word, a listen command, or in the follow-up window)."""
    PROCESSING = "processing"
    """Request complete; waiting for the first answer audio."""
    RESPONDING = "responding"
    """An answer or announcement is playing."""
    MUTED = "muted"
    """Capture stopped by the user; announcements still play."""
    ERROR = "error"
    """The capture device is gone; it is being reopened with backoff."""

    def __str__(self) -> str:
        return self.value


class Trigger(str, Enum):
    WAKE = "wake"  # wake word or listen command (also barge-in during an answer; won arbitration)
    CLAIM = "claim"  # wake word heard, claimed over MQTT: arbitration with the other speakers begins
    STAND_DOWN = "stand_down"  # another speaker heard it better and answers
    SPEECH_ENDED = "speech_ended"
    NO_SPEECH = "no_speech"
    ASK = "ask"  # a text question: straight to processing
    ANSWER_STARTED = "answer_started"  # first answer audio (cloud or local fallback)
    ANNOUNCE = "announce"  # local announcement starts playing
    ANSWER_DONE = "answer_done"
    FOLLOWUP = "followup"  # answer played; listen again without a wake word
    FAILED = "failed"  # the turn ended without anything to say
    STOP = "stop"
    TIMEOUT = "timeout"
    MUTE = "mute"
    UNMUTE = "unmute"
    DEVICE_LOST = "device_lost"
    DEVICE_RESTORED = "device_restored"

    def __str__(self) -> str:
        return self.value


S, T = State, Trigger
ACTIVE = frozenset({S.ARBITRATING, S.LISTENING, S.PROCESSING, S.RESPONDING})
"""States in which the speaker is busy with someone's request (each has a deadline)."""
QUIET = frozenset({S.IDLE, S.MUTED, S.ERROR})
"""States in which a queued announcement may start."""
WAKE_STATES = frozenset({S.IDLE, S.PROCESSING, S.RESPONDING})
"""States in which the wake word is listened for (when enabled): waiting, or to barge in on an answer."""

# (state, trigger) → next state. A trigger absent for a state is illegal there; mapping to the same state
# means "accepted, nothing changes" (e.g. STOP while idle, an announcement while muted).
TABLE: dict[tuple[State, Trigger], State] = {
    (S.IDLE, T.WAKE): S.LISTENING,
    (S.IDLE, T.CLAIM): S.ARBITRATING,
    (S.ARBITRATING, T.WAKE): S.LISTENING,  # won (or a listen command: it wins at once)
    (S.ARBITRATING, T.STAND_DOWN): S.IDLE,
    (S.IDLE, T.ASK): S.PROCESSING,
    (S.IDLE, T.ANNOUNCE): S.RESPONDING,
    (S.IDLE, T.STOP): S.IDLE,
    (S.LISTENING, T.WAKE): S.LISTENING,  # already listening: nothing to restart
    (S.LISTENING, T.SPEECH_ENDED): S.PROCESSING,
    (S.LISTENING, T.NO_SPEECH): S.IDLE,
    (S.LISTENING, T.ANSWER_STARTED): S.RESPONDING,  # server VAD may answer before we saw the end
    (S.PROCESSING, T.WAKE): S.LISTENING,
    (S.PROCESSING, T.ANSWER_STARTED): S.RESPONDING,
    (S.PROCESSING, T.ANSWER_DONE): S.IDLE,
    (S.RESPONDING, T.WAKE): S.LISTENING,  # barge-in
    (S.RESPONDING, T.ANSWER_STARTED): S.RESPONDING,
    (S.RESPONDING, T.ANSWER_DONE): S.IDLE,
    (S.RESPONDING, T.FOLLOWUP): S.LISTENING,
    (S.RESPONDING, T.ANNOUNCE): S.RESPONDING,
    (S.MUTED, T.UNMUTE): S.IDLE,
    (S.MUTED, T.MUTE): S.MUTED,
    (S.MUTED, T.STOP): S.MUTED,
    (S.MUTED, T.ANNOUNCE): S.MUTED,
    (S.MUTED, T.DEVICE_LOST): S.MUTED,  # capture is stopped anyway; resume will re-detect
    (S.ERROR, T.DEVICE_RESTORED): S.IDLE,
    (S.ERROR, T.DEVICE_LOST): S.ERROR,
    (S.ERROR, T.MUTE): S.MUTED,
    (S.ERROR, T.STOP): S.ERROR,
    (S.ERROR, T.ANNOUNCE): S.ERROR,  # the speaker may still work
}
for _s in ACTIVE:
    TABLE[(_s, T.STOP)] = S.IDLE
    TABLE[(_s, T.FAILED)] = S.IDLE
    TABLE[(_s, T.TIMEOUT)] = S.IDLE
    TABLE[(_s, T.MUTE)] = S.MUTED
    TABLE[(_s, T.DEVICE_LOST)] = S.ERROR
TABLE[(S.IDLE, T.MUTE)] = S.MUTED
TABLE[(S.IDLE, T.DEVICE_LOST)] = S.ERROR
TABLE[(S.IDLE, T.UNMUTE)] = S.IDLE
TABLE[(S.IDLE, T.DEVICE_RESTORED)] = S.IDLE
TABLE[(S.ERROR, T.UNMUTE)] = S.ERROR


@dataclass(frozen=True, slots=True)
class Transition:
    before: State
    after: State
    trigger: Trigger
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Longest stay in each active state, in seconds: a backstop behind the parts' own timeouts."""

    listening_s: float
    processing_s: float
    responding_s: float
    arbitrating_s: float = 2.0

    def of(self, state: State) -> float | None:
        return {
            S.ARBITRATING: self.arbitrating_s,
            S.LISTENING: self.listening_s,
            S.PROCESSING: self.processing_s,
            S.RESPONDING: self.responding_s,
        }.get(state)


class StateMachine:
    """`handle(trigger)` is the only writer of `state`; `on_change` hears every accepted change.

    It also owns the one other switch that decides what the speaker listens for: whether the wake word is
    enabled (`set_wake_enabled`); `listens_for_wake` combines the two so no caller repeats the rule."""

    def __init__(
        self,
        deadlines: Deadlines,
        on_change: Callable[[Transition], None] = lambda _t: None,
        clock: Callable[[], float] = time.monotonic,
        *,
        wake_enabled: bool = True,
    ) -> None:
        self._deadlines = deadlines
        self._on_change = on_change
        self._clock = clock
        self._state = S.IDLE
        self._entered = clock()
        self._wake_enabled = wake_enabled

    @property
    def state(self) -> State:
        return self._state

    @property
    def wake_enabled(self) -> bool:
        return self._wake_enabled

    def set_wake_enabled(self, on: bool) -> bool:
        """Switch wake-word detection; returns True if it changed."""
        changed = on != self._wake_enabled
        self._wake_enabled = on
        return changed

    @property
    def listens_for_wake(self) -> bool:
        return self._wake_enabled and self._state in WAKE_STATES

    @property
    def active(self) -> bool:
        return self._state in ACTIVE

    @property
    def deadline(self) -> float | None:
        """Monotonic time at which the current state times out (None: it never does)."""
        limit = self._deadlines.of(self._state)
        return None if limit is None else self._entered + limit

    def allows(self, trigger: Trigger) -> bool:
        return (self._state, trigger) in TABLE

    def handle(self, trigger: Trigger, reason: str = "") -> Transition | None:
        """Apply a trigger. Returns the transition, or None if it was illegal or changed nothing."""
        target = TABLE.get((self._state, trigger))
        if target is None:
            log.info("ignored %s while %s%s", trigger, self._state, f" ({reason})" if reason else "")
            return None
        if trigger is T.TIMEOUT:
            deadline = self.deadline
            if deadline is None or self._clock() < deadline:
                return None  # a stale timer from an earlier state
        if target is self._state:
            return None
        change = Transition(self._state, target, trigger, reason)
        self._state = target
        self._entered = self._clock()
        self._on_change(change)
        return change
