"""Shared fixtures: each rig (PulseAudio, speech, Realtime server, Mosquitto) lives in its own module."""

pytest_plugins = [
    "tests.fixtures_audio",
    "tests.fixtures_speech",
    "tests.fixtures_realtime",
    "tests.fixtures_mqtt",
]
