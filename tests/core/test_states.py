"""The state machine: legal paths, rejected triggers, and the bounded-time property over random events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.core.states import TABLE, Deadlines, State, StateMachine, Transition, Trigger

DEADLINES = Deadlines(listening_s=20.0, processing_s=15.0, responding_s=60.0)
ACTIVE = {State.ARBITRATING, State.LISTENING, State.PROCESSING, State.RESPONDING}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def machine() -> tuple[StateMachine, Clock, list[Transition]]:
    clock, changes = Clock(), list[Transition]()
    return StateMachine(DEADLINES, changes.append, clock), clock, changes


def test_a_whole_turn_goes_round_to_idle() -> None:
    sm, _, changes = machine()
    for trig in (
        Trigger.WAKE,
        Trigger.SPEECH_ENDED,
        Trigger.ANSWER_STARTED,
        Trigger.FOLLOWUP,
        Trigger.NO_SPEECH,
    ):
        assert sm.handle(trig) is not None
    assert [c.after for c in changes] == [
        State.LISTENING,
        State.PROCESSING,
        State.RESPONDING,
        State.LISTENING,
        State.IDLE,
    ]


def test_illegal_trigger_is_rejected_and_changes_nothing() -> None:
    sm, _, changes = machine()
    assert sm.handle(Trigger.SPEECH_ENDED) is None
    assert sm.handle(Trigger.DEVICE_RESTORED) is None
    assert sm.state is State.IDLE and changes == []


def test_barge_in_goes_from_responding_to_listening() -> None:
    sm, _, _ = machine()
    sm.handle(Trigger.ASK)
    sm.handle(Trigger.ANSWER_STARTED)
    change = sm.handle(Trigger.WAKE, "barge-in")
    assert change == Transition(State.RESPONDING, State.LISTENING, Trigger.WAKE, "barge-in")


def test_stale_timeout_is_ignored_and_due_timeout_returns_to_idle() -> None:
    sm, clock, _ = machine()
    sm.handle(Trigger.WAKE)
    clock.now = 19.0
    assert sm.handle(Trigger.TIMEOUT) is None
    clock.now = 20.0
    assert sm.handle(Trigger.TIMEOUT) is not None
    assert sm.state is State.IDLE


def test_mute_and_device_loss_are_left_only_by_their_own_end() -> None:
    sm, _, _ = machine()
    sm.handle(Trigger.DEVICE_LOST)
    assert sm.state is State.ERROR
    assert sm.handle(Trigger.WAKE) is None
    sm.handle(Trigger.MUTE)
    assert sm.handle(Trigger.DEVICE_RESTORED) is None
    sm.handle(Trigger.UNMUTE)
    assert sm.state is State.IDLE


def test_every_state_has_a_way_back_to_idle() -> None:
    for state in State:
        assert any(TABLE.get((state, t)) is State.IDLE for t in Trigger), state


events = st.lists(st.tuples(st.sampled_from(list(Trigger)), st.floats(min_value=0.0, max_value=30.0)), max_size=60)


@settings(max_examples=600, deadline=None)
@given(events)
def test_no_state_outlives_its_deadline_and_quiet_leads_to_idle(seq: list[tuple[Trigger, float]]) -> None:
    """Whatever arrives, an active state never lasts past its deadline once a timer fires, and with the
    device back, unmuted and nothing else happening, the machine is idle within the longest deadline."""
    sm, clock, changes = machine()
    for trigger, wait in seq:
        # the assistant arms a timer for every deadline: fire it if it falls inside this wait
        deadline = sm.deadline
        if deadline is not None and clock.now + wait >= deadline:
            clock.now = deadline
            sm.handle(Trigger.TIMEOUT)
            assert sm.state not in ACTIVE
        clock.now += wait
        entered = clock.now
        before = sm.state
        sm.handle(trigger)
        if sm.state is before and before in ACTIVE:
            assert sm.deadline is not None and sm.deadline <= entered + DEADLINES.responding_s
    # quiet: the user unmutes, the device comes back, timers fire
    for trigger in (Trigger.UNMUTE, Trigger.DEVICE_RESTORED):
        sm.handle(trigger)
    bound = clock.now + max(DEADLINES.listening_s, DEADLINES.processing_s, DEADLINES.responding_s)
    if sm.deadline is not None:
        clock.now = sm.deadline
        sm.handle(Trigger.TIMEOUT)
    assert sm.state is State.IDLE
    assert clock.now <= bound
    for change in changes:
        assert (change.before, change.trigger) in TABLE


switches = st.lists(st.one_of(st.sampled_from(list(Trigger)), st.booleans()), max_size=60)


@settings(max_examples=400, deadline=None)
@given(switches)
def test_the_wake_word_is_listened_for_exactly_when_enabled_and_waiting_or_answering(seq: list[Trigger | bool]) -> None:
    """The one rule for "is the wake word listened for": enabled, and idle or busy with an answer (barge-in);
    never while listening, muted or without a microphone, whatever order switches and triggers come in."""
    sm, _, _ = machine()
    enabled = True
    for step in seq:
        if isinstance(step, bool):
            assert sm.set_wake_enabled(step) == (step != enabled)
            enabled = step
        else:
            sm.handle(step)
        assert sm.wake_enabled is enabled
        expected = enabled and sm.state in (State.IDLE, State.PROCESSING, State.RESPONDING)
        assert sm.listens_for_wake is expected
        assert sm.active is (sm.state in ACTIVE)
