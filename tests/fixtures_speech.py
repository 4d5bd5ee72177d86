"""Fixtures for the speech rig."""
