"""Fixtures for the audio rig."""
