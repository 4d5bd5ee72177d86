"""What a person can ask the speaker to do (the MQTT bridge's and the CLI's Controller): listen, stop,
ask, say, mute, volume, wake on/off. A mixin of the Assistant, kept apart so the turn logic stays readable;
every command still goes through the one state machine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from daemon.core.states import State, StateMachine, Trigger
from daemon.observe.trace import Trace

if TYPE_CHECKING:
    from daemon.core.assistant import Parts

log = logging.getLogger(__name__)
ACTIVE = (State.LISTENING, State.PROCESSING, State.RESPONDING)


class Controls:
    """Command side of the Assistant; the attributes and helpers below are the Assistant's."""

    sm: StateMachine
    parts: Parts
    trace: Trace
    wake_enabled: bool
    _turn: asyncio.Task[Any] | None
    _announce_lock: asyncio.Lock
    _idle: asyncio.Event
    _last_sample: int

    def _spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        raise NotImplementedError

    async def _interrupt(self, reason: str) -> int:
        raise NotImplementedError

    def _begin_listening(self, reason: str, sample: int, preroll: bool) -> bool:
        raise NotImplementedError

    def _start_turn(self, chunks: Any) -> None:
        raise NotImplementedError

    def _reset_wake(self) -> None:
        raise NotImplementedError

    def listen(self) -> None:
        if self.sm.state in (State.PROCESSING, State.RESPONDING):
            self._spawn(self._listen_after_interrupt())
        else:
            self._begin_listening("listen command", self._last_sample, preroll=False)

    async def _listen_after_interrupt(self) -> None:
        await self._interrupt("listen command")
        self._begin_listening("listen command", self._last_sample, preroll=False)

    def stop(self) -> None:
        self._spawn(self._stop())

    async def _stop(self) -> None:
        if self.sm.state in ACTIVE:
            await self._interrupt("stop command")
            self.parts.responder.discard()
        self.sm.handle(Trigger.STOP, "stop command")

    def ask(self, text: str) -> None:
        if self.sm.state is State.MUTED:
            log.warning("ask ignored: the speaker is muted (unmute first)")
            return
        self._spawn(self._ask(text))

    async def _ask(self, text: str) -> None:
        if self.sm.state in ACTIVE:
            await self._interrupt("new question")
            self.sm.handle(Trigger.STOP, "new question")
        if self.sm.handle(Trigger.ASK, "ask command"):
            self.trace.emit("transcript", role="user", text=text)
            self._start_turn(self.parts.responder.ask(text))

    def say(self, text: str, priority: bool = False) -> None:
        self._spawn(self._say(text, priority))

    async def _say(self, text: str, priority: bool) -> None:
        voice = self.parts.voice
        if voice is None:
            log.error("announcement %r not spoken: no local voice (run scripts/fetch-models)", text[:60])
            self.trace.emit("error", code="no_voice", message="no local voice for announcements")
            return
        if priority and self.sm.state in ACTIVE:
            await self._interrupt("priority announcement")
            self.sm.handle(Trigger.STOP, "priority announcement")
        async with self._announce_lock:
            if not priority:
                await self._wait_until_quiet()
            self.trace.emit("announcement", text=text, priority=priority)
            self.sm.handle(Trigger.ANNOUNCE, "announcement")
            me = asyncio.current_task()
            if self.sm.state is State.RESPONDING:
                self._turn = me  # a barge-in or stop cancels it like an answer
            sink = self.parts.sink
            sink.begin()
            try:
                async for chunk in voice.speak(text):
                    sink.write(chunk)
                await sink.drain()
                if self._turn is me and self.sm.state is State.RESPONDING:
                    self.sm.handle(Trigger.ANSWER_DONE, "announcement done")
            finally:  # cancelled by a barge-in or stop: the interrupter decides the next state
                if self._turn is me:
                    self._turn = None

    async def _wait_until_quiet(self) -> None:
        while self.sm.state in ACTIVE:
            self._idle.clear()
            await self._idle.wait()

    def set_mute(self, on: bool) -> None:
        self.parts.choices.update(muted=on)
        self.trace.emit("mute", on=on)
        if on:
            if self.sm.state in ACTIVE:
                self._spawn(self._interrupt("muted"))
            self.sm.handle(Trigger.MUTE, "mute command")
        else:
            self.sm.handle(Trigger.UNMUTE, "unmute command")

    def set_volume(self, percent: int) -> None:
        self.parts.sink.volume = percent
        self.parts.choices.update(volume=percent)
        self.trace.emit("volume", percent=percent)

    def set_wake(self, on: bool) -> None:
        if on and not self.wake_enabled:
            self._reset_wake()
        self.wake_enabled = on
        self.parts.choices.update(wake_enabled=on)
        self.trace.emit("wake_enabled", on=on)
