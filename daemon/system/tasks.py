"""Background tasks that cannot die unobserved.

Why: an exception in a fire-and-forget asyncio task is only reported when the task is garbage-collected
("Task exception was never retrieved"), if ever, and the speaker would sit in a half-finished state until a
deadline. Every task the daemon starts in the background goes through `spawn()`: a strong reference keeps it
alive, and a failure is logged at ERROR with its traceback and counted the moment it happens. The loop's
exception handler (`install`) catches and counts whatever escapes elsewhere (callbacks, library tasks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Supervisor:
    """Keeps background tasks alive and counts the ones that failed (`failures`)."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[Any]] = set()
        self.failures = 0

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """Start `coro` in the background, supervised: a failure is logged and counted when it happens."""
        task = asyncio.create_task(coro, name=name)
        self._running.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self.failures += 1
            log.error("background task %s failed: %s: %s", task.get_name(), type(error).__name__, error, exc_info=error)

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Count and log what reaches the loop's exception handler (anything not started through spawn())."""

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            self.failures += 1
            error = context.get("exception")
            log.error("unhandled error in the event loop: %s", context.get("message"), exc_info=error)

        loop.set_exception_handler(handler)


supervisor = Supervisor()
"""The daemon's one supervisor (one event loop per process)."""
spawn = supervisor.spawn
install = supervisor.install
