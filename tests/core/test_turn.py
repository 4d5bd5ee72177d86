"""The announcement queue: bounded, in order, priority first, and what happens when it is full."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.core.turn import AnnouncementQueue, PendingAnnouncement


def test_ordinary_announcements_keep_their_order_and_a_full_queue_refuses_the_new_one() -> None:
    q = AnnouncementQueue(size=2)
    assert q.push(PendingAnnouncement("one")) is None
    assert q.push(PendingAnnouncement("two")) is None
    assert q.push(PendingAnnouncement("three")) is False  # refused: the older ones keep their place
    assert [q.pop(), q.pop(), q.pop()] == [PendingAnnouncement("one"), PendingAnnouncement("two"), None]


def test_a_priority_announcement_jumps_the_queue_and_makes_room_by_dropping_the_newest_ordinary_one() -> None:
    q = AnnouncementQueue(size=2)
    q.push(PendingAnnouncement("dinner"))
    q.push(PendingAnnouncement("laundry"))
    dropped = q.push(PendingAnnouncement("fire alarm", priority=True))
    assert dropped == PendingAnnouncement("laundry")
    assert q.push(PendingAnnouncement("smoke", priority=True)) == PendingAnnouncement("dinner")
    assert q.push(PendingAnnouncement("flood", priority=True)) is False  # only priority ones left
    assert [q.pop(), q.pop(), q.pop()] == [
        PendingAnnouncement("fire alarm", True),
        PendingAnnouncement("smoke", True),
        None,
    ]


def test_clear_says_how_many_were_dropped() -> None:
    q = AnnouncementQueue(size=5)
    for text in "abc":
        q.push(PendingAnnouncement(text))
    assert q.clear() == 3 and len(q) == 0 and q.pop() is None


def test_a_queue_needs_room_for_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AnnouncementQueue(size=0)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 6), st.lists(st.tuples(st.booleans(), st.booleans()), max_size=40))
def test_bounded_and_priority_first_whatever_arrives(size: int, ops: list[tuple[bool, bool]]) -> None:
    q = AnnouncementQueue(size=size)
    for n, (is_push, priority) in enumerate(ops):
        if is_push:
            q.push(PendingAnnouncement(str(n), priority))
        else:
            q.pop()
        assert len(q) <= size
        items = list(q._items)
        flags = [i.priority for i in items]
        assert flags == sorted(flags, reverse=True)  # every priority one before every ordinary one
