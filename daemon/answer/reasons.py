"""Why an answer came from the local voice: the one list every backend and the fallback share."""

from __future__ import annotations

from enum import Enum


class FallbackReason(str, Enum):
    """Why the answer came from the local voice (the trace's and MQTT's `fallback.reason`).

    Every way a backend can fail names one of these, so each ends in a sentence the user hears
    (`fallback.messages.<reason>`); `breaker_open` is decided by the responder, not by a backend.
    """

    NO_API_KEY = "no_api_key"
    UNREACHABLE = "unreachable"
    """Connection refused, DNS failure or connect timeout."""
    AUTH = "auth"
    """HTTP 401/403 at the handshake."""
    DROPPED = "dropped"
    """The websocket closed mid-answer."""
    TIMEOUT = "timeout"
    """No first answer audio within realtime.response_timeout."""
    EXPIRED = "expired"
    """The 60-minute session ended during a turn."""
    ERROR = "error"
    """A fatal error event from the server."""
    COST_LIMIT = "cost_limit"
    BREAKER_OPEN = "breaker_open"
    """Too many failures in a row: the cloud was not even tried."""
