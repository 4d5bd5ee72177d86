"""Listening: the wake word, endpointing and end-of-turn detection (frames in, detections out)."""
