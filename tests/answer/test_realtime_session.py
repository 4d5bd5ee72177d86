"""RealtimeClient against the test server through the real SDK: the turn, tools, barge-in, every fault."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import numpy as np
import pytest

from daemon.answer.realtime.client import RealtimeClient
from daemon.answer.realtime.protocol import (
    AudioDelta,
    Failure,
    FallbackReason,
    RealtimeEvent,
    RealtimeFailure,
    ResponseDone,
    ServerSpeechStarted,
    TextDelta,
    ToolCall,
    Transcript,
)
from daemon.answer.realtime.usage import cost_usd
from daemon.answer.tools import ToolRegistry
from daemon.audio.resample import StreamResampler
from daemon.config.settings import CostSettings
from tests.fixtures_realtime import TraceLog, wait_until
from tests.realtime_server import Reply, ThreadedRealtimeServer, tone

MakeClient = Callable[..., tuple[RealtimeClient, TraceLog]]


def speech16k(ms: int, freq_hz: float = 300.0) -> bytes:
    """A loud 16 kHz tone standing in for the user's voice (the test server's VAD hears it)."""
    t = np.arange(16 * ms) / 16_000
    return (np.sin(2 * math.pi * freq_hz * t) * 0.4 * 32767).astype("<i2").tobytes()


def frames(pcm: bytes, frame_bytes: int = 2560) -> list[bytes]:
    return [pcm[i : i + frame_bytes] for i in range(0, len(pcm), frame_bytes)]


async def collect(client: RealtimeClient, timeout_s: float = 10.0) -> list[RealtimeEvent]:
    async def run() -> list[RealtimeEvent]:
        return [event async for event in client.events()]

    return await asyncio.wait_for(run(), timeout_s)


def audio_of(events: list[RealtimeEvent]) -> bytes:
    return b"".join(e.pcm24k for e in events if isinstance(e, AudioDelta))


async def test_open_sends_one_ga_session_update(realtime_server: ThreadedRealtimeServer, make_client: MakeClient):
    client, tlog = make_client(realtime_server.url, transcription_model="gpt-4o-mini-transcribe", voice="cedar")
    await client.open()
    await client.open()  # warm: reused
    assert client.connected and realtime_server.record.connections == 1
    assert realtime_server.record.event_types == ["session.update"]
    session = realtime_server.record.sessions[0]
    assert session["audio"]["input"]["turn_detection"] is None
    assert session["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe", "language": "en"}
    assert session["audio"]["output"] == {
        "format": {"type": "audio/pcm", "rate": 24000},
        "voice": "cedar",
        "speed": 1.0,
    }
    assert session["tools"][0]["name"] == "get_time" and session["tool_choice"] == "auto"
    assert [r["event"] for r in tlog.records] == ["realtime_connecting", "realtime_connected"]
    assert realtime_server.record.errors == []


async def test_a_refused_session_config_is_a_clear_error(
    realtime_server: ThreadedRealtimeServer, make_client: MakeClient
):
    client, tlog = make_client(realtime_server.url, voice="robot")
    with pytest.raises(RealtimeFailure) as exc:
        await client.open()
    assert exc.value.reason is FallbackReason.ERROR and exc.value.code == "invalid_value"
    assert "session.audio.output.voice" in exc.value.detail
    assert not client.connected
    assert tlog.events("realtime_error")[0]["code"] == "invalid_value"


async def test_turn_streams_reply_audio(realtime_server: ThreadedRealtimeServer, make_client: MakeClient):
    reply = Reply(transcript="It is noon.", audio=tone(600, 523))
    realtime_server.replies.append(reply)
    client, tlog = make_client(realtime_server.url)
    await client.open()
    user = speech16k(500)
    for frame in frames(user):
        client.append(frame)
    await client.commit()
    events = await collect(client)
    assert audio_of(events) == reply.audio
    finals = [e for e in events if isinstance(e, Transcript) and e.final]
    assert finals == [Transcript("assistant", "It is noon.", final=True)]
    done = events[-1]
    assert isinstance(done, ResponseDone) and done.status == "completed"
    assert done.usage.output_audio == 12 and done.usage.input_audio == 5
    assert done.cost_usd == pytest.approx(cost_usd(done.usage, CostSettings()))
    assert len(realtime_server.record.audio) == len(user) * 3 // 2  # 16 kHz -> 24 kHz, nothing lost
    assert realtime_server.record.commits == [len(user) * 3 // 2]
    names = tlog.names()
    for name in (
        "audio_appended",
        "commit",
        "response_created",
        "first_delta",
        "response_done",
        "transcript",
    ):
        assert name in names, name
    assert len(tlog.events("audio_appended")) == 1


async def test_audio_before_open_is_buffered_and_sent_in_order(
    realtime_server: ThreadedRealtimeServer, make_client: MakeClient
):
    client, _ = make_client(realtime_server.url)
    rng = np.random.default_rng(7)
    user = (rng.standard_normal(16_000) * 4000).astype("<i2").tobytes()  # 1 s, every sample distinct
    for frame in frames(user)[:6]:
        client.append(frame)
    await asyncio.sleep(0.1)
    assert realtime_server.record.connections == 0  # nothing is sent before open()
    opening = asyncio.create_task(client.open())
    for frame in frames(user)[6:]:
        client.append(frame)  # while open() is in progress
    await opening
    await client.commit()
    await collect(client)
    ref = StreamResampler(16_000, 24_000)
    expected = np.frombuffer(ref.process(user) + ref.process(b"", last=True), "<i2").astype(int)
    got = np.frombuffer(bytes(realtime_server.record.audio), "<i2").astype(int)
    assert len(got) == len(expected)
    assert np.abs(got - expected).max() <= 4  # same audio, same order (soxr chunking differs by rounding)


async def test_too_short_commit_is_reported_not_sent(realtime_server: ThreadedRealtimeServer, make_client: MakeClient):
    client, _ = make_client(realtime_server.url)
    await client.open()
    client.append(speech16k(50))
    await client.commit()
    events = await collect(client)
    assert events == [Failure(FallbackReason.ERROR, "input_audio_buffer_commit_empty", "only 50 ms")]
    await wait_until(lambda: "input_audio_buffer.clear" in realtime_server.record.event_types, what="clear")
    assert realtime_server.record.count("input_audio_buffer.commit") == 0
    assert realtime_server.record.count("response.create") == 0


async def test_text_mode(realtime_server: ThreadedRealtimeServer, make_client: MakeClient):
    realtime_server.replies.append(Reply(transcript="Cheaper words, spoken locally."))
    client, _ = make_client(realtime_server.url, output="text")
    await client.open()
    await client.ask("say something")
    events = await collect(client)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Cheaper words, spoken locally."
    assert not any(isinstance(e, AudioDelta) for e in events)
    assert realtime_server.record.sessions[0]["output_modalities"] == ["text"]
    done = events[-1]
    assert isinstance(done, ResponseDone) and done.usage.output_audio == 0


async def test_server_vad_mode(realtime_server: ThreadedRealtimeServer, make_client: MakeClient):
    client, tlog = make_client(
        realtime_server.url, turn_detection="server_vad", transcription_model="gpt-4o-mini-transcribe"
    )
    await client.open()
    for frame in frames(speech16k(400) + bytes(16 * 2 * 800)):
        client.append(frame)
    events = await collect(client)
    assert isinstance(events[0], ServerSpeechStarted)
    assert Transcript("user", "what time is it", final=True) in events
    assert audio_of(events) == realtime_server.default_reply.audio
    assert realtime_server.record.count("input_audio_buffer.commit") == 0  # the server committed
    assert realtime_server.record.count("response.create") == 0  # and answered by itself
    assert realtime_server.record.sessions[0]["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert {"role": "user", "text": "what time is it"} in [
        {k: r[k] for k in ("role", "text")} for r in tlog.events("transcript")
    ]


async def test_tool_round_trip(realtime_server: ThreadedRealtimeServer, make_client: MakeClient):
    realtime_server.replies.extend([Reply(function_call=("get_time", "{}")), Reply(transcript="It is late.")])
    client, _ = make_client(realtime_server.url)
    await client.open()
    await client.ask("what time is it?")
    events = await collect(client)
    calls = [e for e in events if isinstance(e, ToolCall)]
    assert len(calls) == 1 and calls[0].name == "get_time" and '"time"' in calls[0].output
    dones = [e for e in events if isinstance(e, ResponseDone)]
    assert [d.follow_up for d in dones] == [True, False]
    assert audio_of(events) == realtime_server.default_reply.audio
    assert realtime_server.record.count("response.create") == 2
    assert realtime_server.record.items[-1]["call_id"] == calls[0].call_id
    assert realtime_server.record.errors == []  # no conversation_already_has_active_response


async def test_barge_in_cancels_and_truncates_at_played_ms(
    realtime_server: ThreadedRealtimeServer, make_client: MakeClient
):
    realtime_server.replies.append(Reply(audio=tone(3000)))
    client, _ = make_client(realtime_server.url)
    await client.open()
    await client.ask("tell me a long story")
    received = b""
    item_id = ""
    async for event in client.events():
        if isinstance(event, AudioDelta):
            received += event.pcm24k
            item_id = event.item_id
            if len(received) >= 48 * 400:
                break
    await client.cancel(audio_end_ms=300)
    await wait_until(lambda: bool(realtime_server.record.truncates), what="truncate")
    assert realtime_server.record.truncates[0]["item_id"] == item_id
    assert realtime_server.record.truncates[0]["audio_end_ms"] == 300
    await wait_until(lambda: bool(realtime_server.record.responses), what="response end")
    assert realtime_server.record.responses[0]["status"] == "cancelled"
    # the next turn works and is not polluted by the cancelled one
    realtime_server.replies.append(Reply(audio=tone(200)))
    await client.ask("never mind")
    events = await collect(client)
    assert audio_of(events) == tone(200)
    assert realtime_server.record.errors == []


async def test_refused_connection(closed_port_url: str, make_client: MakeClient):
    client, tlog = make_client(closed_port_url)
    with pytest.raises(RealtimeFailure) as exc:
        await client.open()
    assert exc.value.reason is FallbackReason.UNREACHABLE
    assert tlog.events("realtime_error")[0]["reason"] == "unreachable"


@pytest.mark.parametrize(("status", "reason"), [(401, "auth"), (403, "auth"), (503, "unreachable")])
async def test_handshake_status(realtime_server: ThreadedRealtimeServer, make_client: MakeClient, status, reason):
    realtime_server.faults.handshake_status = status
    client, _ = make_client(realtime_server.url)
    with pytest.raises(RealtimeFailure) as exc:
        await client.open()
    assert exc.value.reason.value == reason


async def test_wrong_key_and_no_key(realtime_server: ThreadedRealtimeServer, make_client: MakeClient):
    client, _ = make_client(realtime_server.url, api_key="sk-wrong")
    with pytest.raises(RealtimeFailure) as exc:
        await client.open()
    assert exc.value.reason is FallbackReason.AUTH and "OPENAI_API_KEY" in exc.value.detail
    client, _ = make_client(realtime_server.url, api_key="  ")
    with pytest.raises(RealtimeFailure) as exc:
        await client.open()
    assert exc.value.reason is FallbackReason.NO_API_KEY
    assert realtime_server.record.rejected == [401]  # the keyless client never dialled


async def test_drop_mid_answer_then_reconnect(realtime_server: ThreadedRealtimeServer, make_client: MakeClient):
    realtime_server.faults.drop_after_ms = 200
    client, tlog = make_client(realtime_server.url)
    await client.open()
    await client.ask("hello")
    events = await collect(client)
    assert 0 < len(audio_of(events)) < len(realtime_server.default_reply.audio)
    assert isinstance(events[-1], Failure) and events[-1].reason is FallbackReason.DROPPED
    assert not client.connected and tlog.events("realtime_closed")[-1]["reason"] == "dropped"
    realtime_server.faults.drop_after_ms = None
    await client.open()
    await client.ask("again")
    assert isinstance((await collect(client))[-1], ResponseDone)
    assert realtime_server.record.connections == 2


@pytest.mark.parametrize("stall", ["first", "mid"])
async def test_stall_times_out(realtime_server: ThreadedRealtimeServer, make_client: MakeClient, stall: str):
    realtime_server.faults.stall = stall
    client, _ = make_client(realtime_server.url, response_timeout=0.6)
    await client.open()
    await client.ask("hello")
    events = await collect(client)
    last = events[-1]
    assert isinstance(last, Failure) and last.reason is FallbackReason.TIMEOUT
    assert bool(audio_of(events)) == (stall == "mid")
    await wait_until(lambda: realtime_server.record.count("response.cancel") == 1, what="cancel")
    await wait_until(lambda: bool(realtime_server.record.responses), what="cancelled response")
    realtime_server.faults.stall = ""
    await client.ask("again")  # the session is still usable
    assert isinstance((await collect(client))[-1], ResponseDone)
    assert realtime_server.record.errors == []


async def test_garbage_is_ignored(realtime_server: ThreadedRealtimeServer, make_client: MakeClient):
    realtime_server.faults.garbage = True
    client, _ = make_client(realtime_server.url)
    await client.open()
    await client.ask("hello")
    events = await collect(client)
    assert audio_of(events) == realtime_server.default_reply.audio
    assert isinstance(events[-1], ResponseDone) and client.connected


async def test_session_expired_reconnects_on_next_turn(
    realtime_server: ThreadedRealtimeServer, make_client: MakeClient
):
    client, tlog = make_client(realtime_server.url)
    await client.open()
    await asyncio.to_thread(realtime_server.expire_all)
    await wait_until(lambda: not client.connected, what="expired session to close")
    assert tlog.events("realtime_closed")[-1]["reason"] == "expired"
    await client.open()
    await client.ask("still there?")
    assert isinstance((await collect(client))[-1], ResponseDone)
    assert realtime_server.record.connections == 2
    # expiry in the middle of a turn fails that turn with reason "expired"
    realtime_server.replies.append(Reply(audio=tone(3000)))
    answers = len(tlog.events("first_delta"))
    await client.ask("long one")
    await wait_until(lambda: len(tlog.events("first_delta")) > answers, what="the answer to start")  # mid-turn
    await asyncio.to_thread(realtime_server.expire_all)
    events = await collect(client)
    assert isinstance(events[-1], Failure) and events[-1].reason is FallbackReason.EXPIRED


async def test_idle_session_closes(realtime_server: ThreadedRealtimeServer, make_client: MakeClient):
    realtime_server.replies.append(Reply(audio=tone(100)))
    client, tlog = make_client(realtime_server.url, session_idle_seconds=0.4)
    await client.open()
    await client.ask("hi")
    await collect(client)
    assert client.connected
    await wait_until(lambda: bool(tlog.events("realtime_closed")), timeout_s=5, what="idle close")
    assert tlog.events("realtime_closed")[-1]["reason"] == "idle"
    assert not client.connected
    await wait_until(
        lambda: realtime_server.record.connections == 1 and realtime_server.open_sessions == 0,
        what="server side closed",
    )


async def test_usage_cost_and_daily_limit(realtime_server: ThreadedRealtimeServer, make_client: MakeClient):
    client, tlog = make_client(realtime_server.url, cost=CostSettings(daily_limit=0.0001))
    await client.open()
    for frame in frames(speech16k(1000)):
        client.append(frame)
    await client.commit()
    first = (await collect(client))[-1]
    assert isinstance(first, ResponseDone)
    assert first.usage.input_audio == 10 and first.usage.output_audio == 20  # 1 s in, 1 s out
    expected = (first.usage.input_text * 4 + 10 * 32 + first.usage.output_text * 16 + 20 * 64) / 1e6
    assert first.cost_usd == pytest.approx(expected)
    assert client.cost_today_usd == pytest.approx(expected)
    assert tlog.events("response_done")[0]["usage"]["output_audio"] == 20
    with pytest.raises(RealtimeFailure) as exc:
        await client.open()
    assert exc.value.reason is FallbackReason.COST_LIMIT and "cost.daily_limit" in exc.value.detail


async def test_second_turn_counts_cached_context(realtime_server: ThreadedRealtimeServer, make_client: MakeClient):
    client, _ = make_client(realtime_server.url, tools=ToolRegistry(builtin_time=False))
    await client.open()
    totals = []
    for text in ("first", "second"):
        await client.ask(text)
        done = (await collect(client))[-1]
        assert isinstance(done, ResponseDone)
        totals.append(done.usage)
    assert totals[0].input_cached == 0 and totals[1].input_cached > 0
    assert client.usage_since_start == totals[0] + totals[1]
