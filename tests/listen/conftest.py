"""Fixtures shared by the end-of-turn tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from daemon.config.settings import EndpointSettings
from daemon.listen.turn import load_turn_words
from daemon.listen.words import Words


@pytest.fixture(scope="module")
def words() -> Iterator[Words]:
    """The last-word recognizer (PocketSphinx from its wheel), closed after the module."""
    loaded = load_turn_words(EndpointSettings())
    assert loaded is not None
    yield loaded
    loaded.close()
