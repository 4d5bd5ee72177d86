"""Command payloads as Home Assistant and people send them → typed commands, or a clear refusal."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.mqtt.commands import (
    COMMANDS,
    Ask,
    CommandError,
    Listen,
    Mute,
    Say,
    Stop,
    Volume,
    Wake,
    parse,
)

LIMIT = 4096


@pytest.mark.parametrize(
    ("command", "payload", "expected"),
    [
        ("listen", b"PRESS", Listen()),
        ("listen", b"", Listen()),
        ("stop", b"PRESS", Stop()),
        ("say", b"Dinner is ready", Say("Dinner is ready", False)),
        ("say", b"  padded  ", Say("padded", False)),
        ("say", b'{"text": "Feuer!", "priority": true}', Say("Feuer!", True)),
        ("say", b'{"text": "hi"}', Say("hi", False)),
        ("say", "Grüße aus der Küche".encode(), Say("Grüße aus der Küche", False)),
        ("say", b"42", Say("42", False)),
        ("ask", b"What time is it?", Ask("What time is it?")),
        ("ask", b'{"text": "weather?"}', Ask("weather?")),
        ("mute", b"ON", Mute(True)),
        ("mute", b"off", Mute(False)),
        ("mute", b"true", Mute(True)),
        ("mute", b"0", Mute(False)),
        ("mute", b" On\n", Mute(True)),
        ("wake", b"OFF", Wake(False)),
        ("wake", b"1", Wake(True)),
        ("volume", b"42", Volume(42)),
        ("volume", b"42.0", Volume(42)),
        ("volume", b"0", Volume(0)),
        ("volume", b"100", Volume(100)),
        ("volume", b"99.6", Volume(100)),
        ("volume", b'{"volume": 30}', Volume(30)),
    ],
)
def test_accepts_what_home_assistant_and_people_send(command: str, payload: bytes, expected: object) -> None:
    assert parse(command, payload, LIMIT) == expected


@pytest.mark.parametrize(
    ("command", "payload", "words"),
    [
        ("volume", b"101", ["out of range", "0 to 100"]),
        ("volume", b"-1", ["out of range"]),
        ("volume", b"loud", ["'loud'", "expected a number"]),
        ("volume", b"nan", ["expected a number"]),
        ("volume", b"1e999", ["expected a number"]),
        ("volume", b"true", ["expected a number"]),
        ("mute", b"maybe", ["'maybe'", "expected ON or OFF"]),
        ("wake", b"", ["expected ON or OFF"]),
        ("say", b"   ", ["empty text"]),
        ("say", b'{"text": ""}', ["empty text"]),
        ("say", b'{"text": 5}', ['"text" must be a string']),
        ("say", b'{"text": "hi", "priority": "yes"}', ['"priority" must be true or false']),
        ("say", b'{"text": "hi", "volume": 3}', ["unknown key(s) volume"]),
        ("say", b'{"text": "hi"', ["invalid JSON"]),
        ("ask", b'{"text": "x", "priority": true}', ["unknown key(s) priority"]),
        ("say", b"\xff\xfe", ["not UTF-8"]),
        ("dance", b"now", ["unknown command", "listen, stop, say"]),
        ("say", b"x" * (LIMIT + 1), [f"{LIMIT + 1} bytes", f"limit is {LIMIT}", "max_payload_bytes"]),
    ],
)
def test_rejects_bad_payloads_naming_topic_and_expectation(command: str, payload: bytes, words: list[str]) -> None:
    with pytest.raises(CommandError) as err:
        parse(command, payload, LIMIT)
    message = str(err.value)
    assert message.startswith(f"cmd/{command}: ")
    for w in words:
        assert w in message, message


def test_long_payloads_are_shortened_in_messages() -> None:
    with pytest.raises(CommandError) as err:
        parse("mute", b"y" * 1000, LIMIT)
    assert len(str(err.value)) < 200


def test_deeply_nested_json_is_refused_not_crashing() -> None:
    with pytest.raises(CommandError, match="invalid JSON|expected plain text"):
        parse("say", b"{" + b'"a":[' * 3000 + b"1", 100_000)
    with pytest.raises(CommandError):
        parse("volume", b"[" * 50_000, 100_000)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
payloads = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"ON", b"OFF", b"on", b"42", b"42.5", b"-0", b"1e3", b'{"text":"x"}']),
)


@settings(max_examples=3000, deadline=None)
@given(command=st.sampled_from([*COMMANDS, "nope", "say/x", ""]), payload=payloads)
def test_any_payload_gives_a_valid_command_or_a_command_error(command: str, payload: bytes) -> None:
    try:
        cmd = parse(command, payload, 256)
    except CommandError as e:
        assert str(e).startswith(f"cmd/{command}: ")
        return
    if isinstance(cmd, (Say, Ask)):
        assert cmd.text and cmd.text == cmd.text.strip()
    if isinstance(cmd, Say):
        assert isinstance(cmd.priority, bool)
    if isinstance(cmd, Volume):
        assert isinstance(cmd.percent, int) and 0 <= cmd.percent <= 100
    if isinstance(cmd, (Mute, Wake)):
        assert isinstance(cmd.on, bool)


def test_commands_are_frozen() -> None:
    cmd = Say("hi", False)
    with pytest.raises(AttributeError):
        cmd.text = "other"  # type: ignore[misc]
