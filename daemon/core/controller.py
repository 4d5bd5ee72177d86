"""What a person can ask the speaker to do: listen, stop, ask, say, mute, volume, wake on/off.

The MQTT bridge and the CLI call these plain methods with validated values. Each queues one command on the
assistant, which runs commands one at a time in the order they came, so "say" followed by "stop" always
stops what was said, however fast the two arrive. Every command goes through the one state machine.
"""

from __future__ import annotations

from daemon.core.assistant import Assistant


class Controller:
    """The command side of the speaker (the `Controller` protocol of daemon.mqtt.bridge)."""

    def __init__(self, assistant: Assistant) -> None:
        self._assistant = assistant

    def listen(self) -> None:
        self._assistant.command(lambda: self._assistant.listen("listen command"))

    def stop(self) -> None:
        self._assistant.command(lambda: self._assistant.stop("stop command"))

    def ask(self, text: str) -> None:
        self._assistant.command(lambda: self._assistant.ask(text))

    def say(self, text: str, priority: bool = False) -> None:
        self._assistant.command(lambda: self._assistant.say(text, priority))

    def set_mute(self, on: bool) -> None:
        self._assistant.command(lambda: self._assistant.set_mute(on))

    def set_volume(self, percent: int) -> None:
        async def run() -> None:
            self._assistant.set_volume(percent)

        self._assistant.command(run)

    def set_wake(self, on: bool) -> None:
        async def run() -> None:
            self._assistant.set_wake(on)

        self._assistant.command(run)
