"""Reading the event bus the way the JSON-lines trace records it (tests read what a trace reader reads)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from daemon.observe.bus import EventBus


def record_into(bus: EventBus, sink: Callable[[dict[str, Any]], object]) -> EventBus:
    """Hand every event's trace record to `sink` (e.g. a list's append); returns the bus."""
    bus.subscribe_all(lambda event: sink(event.record()))
    return bus


def recorded() -> tuple[EventBus, list[dict[str, Any]]]:
    """A fresh bus and the list its trace records collect in."""
    records: list[dict[str, Any]] = []
    return record_into(EventBus(), records.append), records
