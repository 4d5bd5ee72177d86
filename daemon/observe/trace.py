"""JSON-lines trace: what happened, when (monotonic seconds) and, for audio events, at which input sample.

The trace is how tests and benchmarks see the daemon from outside: it subscribes to every event on the bus
(daemon.observe.bus) and writes `Event.record()` per line. Writing must never block or break the audio
path: lines go through a bounded queue to a writer thread, and a full queue or a failing disk drops trace
lines (counted), never audio.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from pathlib import Path
from typing import Any

from daemon.observe.bus import EventBus
from daemon.observe.events import Event

log = logging.getLogger(__name__)


class Trace:
    """Writes every event on the bus as one JSON line (`path` None: nothing written, e.g. in tests)."""

    def __init__(self, bus: EventBus, path: str | Path | None = None, max_queue: int = 10_000) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=max_queue)
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.path = Path(path) if path else None
        if self.path is not None:
            self._thread = threading.Thread(target=self._writer, name="hark-trace", daemon=True)
            self._thread.start()
            bus.subscribe_all(self._on_event)

    def _on_event(self, event: Event) -> None:
        if self._thread is None:
            return
        try:
            self._queue.put_nowait(json.dumps(event.record(), default=str, ensure_ascii=False))
        except queue.Full:
            self.dropped += 1

    def close(self, timeout_s: float = 2.0) -> None:
        if self._thread is None:
            return
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            pass
        self._thread.join(timeout_s)
        self._thread = None

    def _writer(self) -> None:
        assert self.path is not None
        failing = False
        try:
            fh = self.path.open("a", encoding="utf-8", buffering=1)
        except OSError as e:
            log.error(
                "trace file %s cannot be opened (%s): tracing off; check the path and permissions",
                self.path,
                e,
            )
            fh = None
        while (line := self._queue.get()) is not None:
            if fh is None:
                self.dropped += 1
                continue
            try:
                fh.write(line + "\n")
                failing = False
            except OSError as e:
                self.dropped += 1
                if not failing:  # say it once per outage, not once per line
                    log.warning("trace line dropped: %s (disk full?); audio is unaffected", e)
                failing = True
        if fh is not None:
            try:
                fh.close()
            except OSError:
                pass


def read(path: str | Path) -> list[dict[str, Any]]:
    """Load a trace file (tests, benchmarks)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.append(json.loads(line))
    return out
