"""Hark: a smart-speaker daemon (wake word → Realtime API → speaker, Piper fallback, MQTT control)."""

__version__ = "0.1.0"
