"""The test server speaks GA Realtime the way the real API does, checked with the real openai SDK."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from openai import AsyncOpenAI
from websockets.exceptions import InvalidStatus

from tests.fixtures_realtime import API_KEY
from tests.realtime_server import Reply, ThreadedRealtimeServer, tone

GA_SESSION: dict[str, Any] = {
    "type": "realtime",
    "model": "gpt-realtime",
    "output_modalities": ["audio"],
    "audio": {
        "input": {"format": {"type": "audio/pcm", "rate": 24000}, "turn_detection": None},
        "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin"},
    },
}


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode()


async def next_of(conn: Any, *types: str, timeout_s: float = 5.0) -> Any:
    """The next server event of one of `types` (others are skipped), bounded."""

    async def find() -> Any:
        while True:
            event = await conn.recv()
            if getattr(event, "type", None) in types:
                return event

    return await asyncio.wait_for(find(), timeout_s)


@pytest.fixture
async def conn(realtime_server: ThreadedRealtimeServer) -> AsyncIterator[Any]:
    client = AsyncOpenAI(api_key=API_KEY, websocket_base_url=realtime_server.url)
    async with client.realtime.connect(model="gpt-realtime") as connection:
        created = await next_of(connection, "session.created")
        assert created.session.type == "realtime"
        yield connection


async def test_ga_session_update_is_accepted(conn: Any, realtime_server: ThreadedRealtimeServer) -> None:
    await conn.session.update(session=GA_SESSION)
    updated = await next_of(conn, "session.updated", "error")
    assert updated.type == "session.updated"
    assert realtime_server.record.sessions[-1]["audio"]["output"]["voice"] == "marin"
    assert realtime_server.record.sessions[-1]["audio"]["input"]["turn_detection"] is None


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({"type": "realtime", "voice": "alloy"}, "unknown_parameter", "session.voice"),
        ({"type": "realtime", "modalities": ["audio", "text"]}, "unknown_parameter", "session.modalities"),
        (
            {"type": "realtime", "input_audio_format": "pcm16"},
            "unknown_parameter",
            "session.input_audio_format",
        ),
        ({"type": "realtime", "temperature": 0.8}, "unknown_parameter", "session.temperature"),
        ({"output_modalities": ["audio"]}, "missing_required_parameter", "session.type"),
        (
            {"type": "realtime", "output_modalities": ["audio", "text"]},
            "invalid_value",
            "session.output_modalities",
        ),
        (
            {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            "invalid_value",
            "session.audio.input.format.rate",
        ),
    ],
)
async def test_beta_or_wrong_session_is_rejected(conn: Any, session: dict[str, Any], code: str, param: str) -> None:
    await conn.send({"type": "session.update", "session": session})
    error = await next_of(conn, "error", "session.updated")
    assert error.type == "error"
    assert (error.error.code, error.error.param) == (code, param)
    assert param in error.error.message


async def test_beta_header_and_wrong_key_are_refused_at_handshake(
    realtime_server: ThreadedRealtimeServer,
) -> None:
    beta = AsyncOpenAI(api_key=API_KEY, websocket_base_url=realtime_server.url)
    with pytest.raises(InvalidStatus) as exc:
        await beta.realtime.connect(model="gpt-realtime", extra_headers={"OpenAI-Beta": "realtime=v1"}).enter()
    assert exc.value.response.status_code == 400
    wrong = AsyncOpenAI(api_key="sk-wrong", websocket_base_url=realtime_server.url)
    with pytest.raises(InvalidStatus) as exc:
        await wrong.realtime.connect(model="gpt-realtime").enter()
    assert exc.value.response.status_code == 401
    assert realtime_server.record.rejected == [400, 401]


async def test_commit_needs_100ms(conn: Any, realtime_server: ThreadedRealtimeServer) -> None:
    await conn.session.update(session=GA_SESSION)
    await conn.input_audio_buffer.append(audio=b64(tone(50)))
    await conn.input_audio_buffer.commit()
    error = await next_of(conn, "error", "input_audio_buffer.committed")
    assert error.error.code == "input_audio_buffer_commit_empty"
    await conn.input_audio_buffer.append(audio=b64(tone(100)))
    await conn.input_audio_buffer.commit()
    committed = await next_of(conn, "input_audio_buffer.committed", "error")
    assert committed.type == "input_audio_buffer.committed"
    assert realtime_server.record.commits == [4800 + 2400]


async def test_reply_streams_the_scripted_audio(conn: Any, realtime_server: ThreadedRealtimeServer) -> None:
    reply = Reply(transcript="Hello there, friend.", audio=tone(400, 660))
    realtime_server.replies.append(reply)
    await conn.session.update(session=GA_SESSION)
    await conn.response.create()
    await conn.response.create()  # while the first is still streaming
    events = []
    while (
        event := await next_of(
            conn,
            "response.output_audio.delta",
            "response.output_audio_transcript.done",
            "response.done",
            "error",
        )
    ).type != "response.done":
        events.append(event)
    errors = [e.error.code for e in events if e.type == "error"]
    assert errors == ["conversation_already_has_active_response"]
    deltas = [e for e in events if e.type == "response.output_audio.delta"]
    audio, item_id = b"".join(base64.b64decode(e.delta) for e in deltas), deltas[-1].item_id
    transcript = next(e.transcript for e in events if e.type == "response.output_audio_transcript.done")
    assert audio == reply.audio
    assert transcript == reply.transcript
    assert event.response.status == "completed"
    assert event.response.usage.output_token_details.audio_tokens == 8  # 400 ms at 20 tokens/s
    # truncate: past the end is refused, within is recorded
    await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=5000)
    assert (await next_of(conn, "error")).error.code == "invalid_value"
    await conn.conversation.item.truncate(item_id=item_id, content_index=0, audio_end_ms=250)
    truncated = await next_of(conn, "conversation.item.truncated")
    assert truncated.audio_end_ms == 250
    await conn.response.cancel()
    assert (await next_of(conn, "error")).error.code == "response_cancel_not_active"


async def test_text_mode_streams_text(conn: Any, realtime_server: ThreadedRealtimeServer) -> None:
    realtime_server.replies.append(Reply(transcript="Four words of text."))
    await conn.session.update(session={**GA_SESSION, "output_modalities": ["text"]})
    await conn.response.create()
    text = ""
    while (event := await next_of(conn, "response.output_text.delta", "response.done")).type != "response.done":
        text += event.delta
    assert text == "Four words of text."
    assert "response.output_audio.delta" not in realtime_server.record.event_types


async def test_server_vad_detects_speech_and_answers(conn: Any, realtime_server: ThreadedRealtimeServer) -> None:
    session = {
        **GA_SESSION,
        "audio": {
            "input": {
                "turn_detection": {"type": "server_vad"},
                "transcription": {"model": "gpt-4o-mini-transcribe"},
            }
        },
    }
    await conn.session.update(session=session)
    await next_of(conn, "session.updated")
    silence = bytes(24_000 * 2 * 7 // 10)
    await conn.input_audio_buffer.append(audio=b64(tone(400)))
    await conn.input_audio_buffer.append(audio=b64(silence))
    seen = []
    while (
        event := await next_of(
            conn,
            "input_audio_buffer.speech_started",
            "input_audio_buffer.speech_stopped",
            "input_audio_buffer.committed",
            "response.created",
            "conversation.item.input_audio_transcription.completed",
        )
    ).type != "response.created":
        seen.append(event.type)
    assert seen[:3] == [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
    ]
    assert "conversation.item.input_audio_transcription.completed" in seen


async def test_function_call_then_output_then_answer(conn: Any, realtime_server: ThreadedRealtimeServer) -> None:
    realtime_server.replies.extend([Reply(function_call=("get_time", "{}")), Reply(audio=tone(100))])
    await conn.session.update(session=GA_SESSION)
    await conn.response.create()
    done = await next_of(conn, "response.function_call_arguments.done")
    await next_of(conn, "response.done")
    await conn.conversation.item.create(item={"type": "function_call_output", "call_id": "nope", "output": "x"})
    assert (await next_of(conn, "error")).error.param == "item.call_id"
    await conn.conversation.item.create(
        item={"type": "function_call_output", "call_id": done.call_id, "output": '{"time": "12:00"}'}
    )
    await conn.response.create()
    final = await next_of(conn, "response.done")
    assert final.response.status == "completed"
    assert realtime_server.record.items[-1]["call_id"] == done.call_id


async def test_unknown_client_event_is_an_error(conn: Any) -> None:
    await conn.send({"type": "response.audio.delta", "delta": ""})
    error = await next_of(conn, "error")
    assert error.error.code == "invalid_value" and error.error.param == "type"
