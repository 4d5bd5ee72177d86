"""Fixtures for the mqtt rig."""
