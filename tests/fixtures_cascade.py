"""The cascade test server (tests/cascade_server.py) as a fixture, on a free port, in its own thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cascade_server import ThreadedCascadeServer
from tests.fixtures_realtime import API_KEY


@pytest.fixture
def cascade_server() -> Iterator[ThreadedCascadeServer]:
    server = ThreadedCascadeServer(api_key=API_KEY).start()
    try:
        yield server
    finally:
        server.stop()
