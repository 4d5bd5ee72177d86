"""Fixtures for the realtime rig."""
