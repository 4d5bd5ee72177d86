"""Command payloads as Home Assistant and people send them → typed commands, or a clear refusal."""

from __future__ import annotations

import json
import time
import unicodedata

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
        ("volume", b" 42 ", Volume(42)),
        ("volume", b"42\n", Volume(42)),
        ("volume", b'{"volume": 42.0}', Volume(42)),
        ("volume", b' { "volume" : 7 } ', Volume(7)),
        ("volume", b"-0", Volume(0)),
        ("volume", b"007", Volume(7)),
        ("say", b"line one\nline two\ttab\r\n", Say("line one\nline two\ttab", False)),
        ("say", "Zwölf 🔥 ‍".encode(), Say("Zwölf 🔥 ‍", False)),
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
        ("volume", b"9" * 4000, ["4000-character number", "expected a number from 0 to 100"]),
        ("volume", b'{"volume": ' + b"9" * 4000 + b"}", ["4000-character number"]),
        ("volume", b'{"volume": 1' + b"0" * 400 + b".5}", ["403-character number"]),
        ("volume", b"1_0", ["'1_0'", "ASCII digits", "no exponents, separators or other digits"]),
        ("volume", "٤٢".encode(), ["'٤٢'", "ASCII digits"]),
        ("volume", "４２".encode(), ["ASCII digits"]),
        ("volume", "४२".encode(), ["ASCII digits"]),
        ("volume", b"1e2", ["'1e2'", "no exponents"]),
        ("volume", b"0x10", ["ASCII digits"]),
        ("volume", b"inf", ["expected a number"]),
        ("volume", b"4 2", ["expected a number"]),
        ("volume", b"", ["expected a number"]),
        ("volume", b'{"volume": NaN}', ["expected a number"]),
        ("volume", b'{"volume": Infinity}', ["expected a number"]),
        ("volume", b'{"volume": "42"}', ["expected a number"]),
        ("volume", b'{"volume": 1e2}', ["no exponents"]),
        ("volume", b"100.5", ["100.5 is out of range"]),
        ("say", b"Dinner\x00 is ready", ["control character U+0000 at position 6", "line breaks and tabs are fine"]),
        ("say", b"\x1b[31mred", ["control character U+001B"]),
        ("ask", b"why\x07", ["control character U+0007"]),
        ("say", "next\u0085line".encode(), ["control character U+0085"]),
        ("say", b'{"text": "a\\u0000b"}', ["control character U+0000"]),
        ("say", b'{"text": "lone \\ud800 surrogate"}', ["control character U+D800"]),
        ("say", b'{"text": "hi", "priority": ' + b"9" * 4000 + b"}", ['"priority" must be true or false']),
        ("say", b"\xc0\x80", ["not UTF-8"]),  # overlong NUL
        ("say", b"\xed\xa0\x80", ["not UTF-8"]),  # encoded surrogate
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


def test_a_megabyte_payload_is_refused_by_size_or_parsed_quickly() -> None:
    megabyte = 1_000_000  # the largest mqtt.max_payload_bytes allows
    with pytest.raises(CommandError, match="payload is 1000001 bytes; the limit is 1000000"):
        parse("say", b"x" * (megabyte + 1), megabyte)
    start = time.monotonic()
    with pytest.raises(CommandError, match="1000000-character number"):
        parse("volume", b"9" * megabyte, megabyte)
    with pytest.raises(CommandError, match="control character U\\+0000"):
        parse("say", b"a" * (megabyte - 1) + b"\x00", megabyte)
    assert parse("say", b"a " * (megabyte // 2), megabyte) == Say(("a " * (megabyte // 2)).strip())
    assert time.monotonic() - start < 10  # seconds, on a loaded 2-core machine: linear work, not a hang


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
digits = st.sampled_from("0123456789٠١٢٣٤٥٦٧٨٩０１２３４５６７８９४२_.eE+- \x00")
numberish = st.one_of(
    st.text(digits, max_size=40),
    st.integers().map(str),
    st.tuples(st.sampled_from(["", "-", "+"]), st.integers(1, 5000), st.sampled_from(["", ".", ".5"])).map(
        lambda t: t[0] + "9" * t[1] + t[2]
    ),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.decimals(allow_nan=False).map(str),
).map(str.encode)
any_payload = st.one_of(payloads, numberish, numberish.map(lambda n: b'{"volume": ' + n + b"}"))
FORBIDDEN_IN_TEXT = {"Cc", "Cs"}


@settings(max_examples=3000, deadline=None)
@given(command=st.sampled_from([*COMMANDS, "nope", "say/x", ""]), payload=any_payload)
def test_any_payload_gives_a_valid_command_or_a_command_error(command: str, payload: bytes) -> None:
    try:
        cmd = parse(command, payload, 100_000)
    except CommandError as e:
        assert str(e).startswith(f"cmd/{command}: ")
        return
    if isinstance(cmd, (Say, Ask)):
        assert cmd.text and cmd.text == cmd.text.strip()
        assert not [c for c in cmd.text if c not in "\n\t\r" and unicodedata.category(c) in FORBIDDEN_IN_TEXT]
        cmd.text.encode("utf-8")  # speakable: no lone surrogates
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
