"""Listening: wake word, endpointing and end-of-turn detection."""
