"""What the speaker is doing for someone right now, and what waits its turn.

A `Turn` is one piece of work that ends in sound: an answer (cloud or local) or an announcement. The
assistant runs at most one at a time and is the only one who decides what happens when it ends: the turn's
coroutine never touches the state machine, it returns an `Outcome`, and an interrupted turn is detached
before it is cancelled so its outcome is never applied. Announcements wait in a bounded `AnnouncementQueue`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal


class Outcome(str, Enum):
    """How a turn ended by itself (an interrupted turn has no outcome: its interrupter decides)."""

    DONE = "done"
    """Everything was said."""
    FAILED = "failed"
    """Nothing could be said (no answer, synthesis failed)."""
    FOLLOWUP = "followup"
    """The answer was said; listen again without a wake word."""


@dataclass(eq=False)
class Turn:
    """One answer or announcement; `task` produces its audio and returns its Outcome."""

    kind: Literal["answer", "announcement"]
    task: asyncio.Task[Outcome]


@dataclass(frozen=True, slots=True)
class PendingAnnouncement:
    text: str
    priority: bool = False


@dataclass
class AnnouncementQueue:
    """Announcements waiting to be spoken, oldest first; priority ones jump to the front.

    When full, a new ordinary announcement is refused (`push` returns False and the caller says so): the
    household hears the older ones in order rather than losing something already promised. A priority
    announcement is always taken; if it overflows the queue, the newest ordinary one is dropped instead.
    """

    size: int
    _items: deque[PendingAnnouncement] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"announcement queue size {self.size}: expected at least 1")

    def __len__(self) -> int:
        return len(self._items)

    def push(self, item: PendingAnnouncement) -> PendingAnnouncement | None | Literal[False]:
        """Queue `item`. Returns False if it was refused, the ordinary announcement dropped to make room for
        a priority one, or None."""
        if not item.priority:
            if len(self._items) >= self.size:
                return False
            self._items.append(item)
            return None
        dropped = None
        if len(self._items) >= self.size:
            ordinary = [i for i in self._items if not i.priority]
            if not ordinary:
                return False
            dropped = ordinary[-1]
            self._items.remove(dropped)
        at = sum(1 for i in self._items if i.priority)  # after earlier priority ones, before the rest
        self._items.insert(at, item)
        return dropped

    def pop(self) -> PendingAnnouncement | None:
        return self._items.popleft() if self._items else None

    def clear(self) -> int:
        """Forget everything queued; returns how many were dropped."""
        n = len(self._items)
        self._items.clear()
        return n
