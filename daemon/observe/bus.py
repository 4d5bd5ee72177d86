"""The typed event bus: parts publish events (daemon.observe.events), subscribers register per type.

Why a bus: the trace, MQTT, metrics and systemd STATUS each want a different slice of what happens, and no
part of the pipeline should know they exist. Handlers run synchronously in the publisher's thread and must
be cheap. A handler that raises is logged at ERROR with the event and counted (`failures`); the other
handlers still run, and the publisher never sees the exception: a broken dashboard must not cost audio.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from daemon.observe.events import Event

log = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)
Handler = Callable[[E], None]


class EventBus:
    """`subscribe(Type, handler)` for one kind, `subscribe_all(handler)` for every event; `publish(event)`."""

    def __init__(self) -> None:
        self._by_type: dict[type[Event], list[Callable[[Event], None]]] = {}
        self._all: list[Callable[[Event], None]] = []
        self._lock = threading.Lock()
        self.failures = 0
        """Handler exceptions so far (each also logged at ERROR)."""

    def subscribe(self, kind: type[E], handler: Callable[[E], None]) -> None:
        with self._lock:
            self._by_type.setdefault(kind, []).append(handler)  # type: ignore[arg-type]

    def subscribe_all(self, handler: Callable[[Event], None]) -> None:
        with self._lock:
            self._all.append(handler)

    def publish(self, event: Event) -> None:
        handlers = [*self._all, *self._by_type.get(type(event), ())]
        for handler in handlers:
            try:
                handler(event)
            except Exception:
                with self._lock:
                    self.failures += 1
                log.exception("event handler %s failed on %r (the other handlers still ran)", _name(handler), event)


def _name(handler: Callable[..., object]) -> str:
    return getattr(handler, "__qualname__", None) or repr(handler)
