"""Shared fixtures: each rig (PulseAudio, speech, Realtime and cascade servers, Mosquitto) has its own module."""

pytest_plugins = [
    "tests.fixtures_audio",
    "tests.fixtures_speech",
    "tests.fixtures_realtime",
    "tests.fixtures_cascade",
    "tests.fixtures_mqtt",
]
