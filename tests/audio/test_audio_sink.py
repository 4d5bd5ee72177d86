"""Playback: a real PyAudio stream recorded off the rig's speaker monitor, the WAV sink, and chimes."""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from daemon.audio.chimes import CHIME_NAMES, load_chimes
from daemon.audio.frames import AudioChunk
from daemon.audio.resample import AudioFileError
from daemon.audio.sink import PyAudioSink, WavSink, open_sink
from daemon.config.settings import AudioSettings, ChimeSettings
from daemon.observe.bus import EventBus
from tests.fixtures_audio import PulseRig, active_span, rms, tone, write_wav
from tests.records import recorded

FULL = 32767


def chunks(freq_hz: float, seconds: float, rate_hz: int, level: float = 0.5, chunk_ms: int = 40) -> list[AudioChunk]:
    pcm = (tone(freq_hz, seconds, rate_hz, level) * FULL).astype("<i2").tobytes()
    step = rate_hz * chunk_ms // 1000 * 2
    return [AudioChunk(pcm[i : i + step], rate_hz) for i in range(0, len(pcm), step)]


def traced() -> tuple[EventBus, list[dict[str, Any]]]:
    return recorded()


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wf:
        return np.frombuffer(wf.readframes(wf.getnframes()), "<i2"), wf.getframerate()


def peak_hz(x: np.ndarray, rate_hz: int) -> float:
    return float(np.argmax(np.abs(np.fft.rfft(x.astype(float)))) * rate_hz / len(x))


# --- the real device -------------------------------------------------------------------------------------


@pytest.fixture
async def speaker(pulse_rig: PulseRig) -> Any:
    trace, events = traced()
    sink = PyAudioSink("hark_speaker", trace, volume=100, reopen_min_s=0.2, reopen_max_s=1.0)
    await sink.start()
    assert sink.rate_hz == 24_000
    yield sink, events
    await sink.aclose()


async def test_played_tone_reaches_the_speaker(pulse_rig: PulseRig, speaker: Any, tmp_path: Path) -> None:
    sink, events = speaker
    rec = pulse_rig.record_speaker(tmp_path / "rec.raw")
    await rec.started()
    sink.begin()
    for c in chunks(440, 1.0, 22_050):  # Piper's rate: resampled to the device's 24 kHz
        sink.write(c)
    played_ms = await asyncio.wait_for(sink.drain(), 10)
    assert not sink.playing
    await rec.more(0.5)  # the tail of the tone and some silence after it
    got = rec.stop()
    start, end = active_span(got, 16_000, 2000)
    assert end - start == pytest.approx(1.0, abs=0.1)
    assert played_ms == pytest.approx(1000, abs=30)
    segment = got[int((start + 0.1) * 16_000) : int((end - 0.1) * 16_000)]
    assert peak_hz(segment, 16_000) == pytest.approx(440, abs=5)
    assert rms(segment) == pytest.approx(0.5 * FULL / np.sqrt(2), rel=0.1)
    names = [e["event"] for e in events]
    assert names == ["playback_started", "playback_stopped"]
    assert events[1]["reason"] == "drained" and events[1]["played_ms"] == played_ms


async def test_stop_silences_at_once_and_reports_played_ms(pulse_rig: PulseRig, speaker: Any, tmp_path: Path) -> None:
    sink, events = speaker
    rec = pulse_rig.record_speaker(tmp_path / "rec.raw")
    await rec.started()
    sink.begin()
    for c in chunks(440, 5.0, 24_000):  # 5 s queued at once, as a streamed answer would be
        sink.write(c)
    drained = asyncio.create_task(sink.drain())
    await asyncio.sleep(0.8)
    assert sink.playing
    played_ms = sink.stop()
    assert not sink.playing
    assert await asyncio.wait_for(drained, 2) == played_ms  # a waiting drain() returns at once
    await rec.more(0.8)  # long enough to hear audio that would (wrongly) go on after stop()
    got = rec.stop()
    start, end = active_span(got, 16_000, 2000)
    assert 300 < played_ms < 4000  # stopped well before the 5 s end
    assert (end - start) * 1000 == pytest.approx(played_ms, abs=150), "what was heard != what was reported"
    assert events[-1] == {
        **events[-1],
        "event": "playback_stopped",
        "reason": "stopped",
        "played_ms": played_ms,
    }


async def test_volume_scales_what_is_heard(pulse_rig: PulseRig, speaker: Any, tmp_path: Path) -> None:
    sink, _ = speaker
    levels = {}
    for volume in (100, 30):
        sink.volume = volume
        rec = pulse_rig.record_speaker(tmp_path / f"rec{volume}.raw")
        await rec.started()
        for c in chunks(440, 0.6, 24_000):
            sink.write(c)
        await asyncio.wait_for(sink.drain(), 10)
        await rec.more(0.3)
        got = rec.stop()
        start, end = active_span(got, 16_000, 500)
        levels[volume] = rms(got[int((start + 0.1) * 16_000) : int((end - 0.1) * 16_000)])
    assert levels[30] / levels[100] == pytest.approx(0.3, rel=0.1)


async def test_bad_volume_is_refused(speaker: Any) -> None:
    sink, _ = speaker
    for bad in (101, -1, 50.5, True):
        with pytest.raises(ValueError, match="volume must be an integer from 0 to 100"):
            sink.volume = bad
    assert sink.volume == 100


async def test_output_device_loss_drops_audio_and_recovers(pulse_rig: PulseRig, speaker: Any) -> None:
    sink, events = speaker
    for c in chunks(440, 3.0, 24_000):
        sink.write(c)
    await _until(lambda: any(e["event"] == "playback_started" for e in events), 10)  # unplugged mid-stream
    pulse_rig.unplug()
    try:
        await _until(lambda: any(e["event"] == "device_lost" for e in events), 15)
        assert not sink.playing  # the stream in progress ended; drain() cannot hang
        sink.write(chunks(440, 0.2, 24_000)[0])  # dropped with a warning, no exception
        assert await asyncio.wait_for(sink.drain(), 2) >= 0
    finally:
        pulse_rig.replug()
    await _until(lambda: any(e["event"] == "device_restored" for e in events), 30)
    await _until(lambda: sink._device_ok, 10)
    sink.begin()
    for c in chunks(440, 0.3, 24_000):
        sink.write(c)
    assert await asyncio.wait_for(sink.drain(), 10) == pytest.approx(300, abs=30)


async def _until(cond: Any, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


# --- the WAV sink ----------------------------------------------------------------------------------------


async def test_wav_sink_writes_what_would_have_been_played(tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    trace, events = traced()
    sink = open_sink(AudioSettings(output=f"wav:{out}", realtime_pace=False, volume=50), trace)
    assert isinstance(sink, WavSink)
    await sink.start()
    sink.begin()
    for c in chunks(440, 0.5, 16_000, level=0.8):
        sink.write(c)
    assert await sink.drain() == pytest.approx(500, abs=2)
    await asyncio.sleep(0.3)  # silence between answers is left out of the file
    sink.begin()
    for c in chunks(880, 0.25, 22_050, level=0.8):
        sink.write(c)
    assert await sink.drain() == pytest.approx(250, abs=2)
    await sink.aclose()
    got, rate = read_wav(out)
    assert rate == 24_000
    assert len(got) / rate == pytest.approx(0.75, abs=0.005)
    assert peak_hz(got[1000:11000], rate) == pytest.approx(440, abs=3)
    assert peak_hz(got[13000:17000], rate) == pytest.approx(880, abs=6)
    assert rms(got[1000:11000]) == pytest.approx(0.8 * 0.5 * FULL / np.sqrt(2), rel=0.03)  # volume 50
    kinds = [(e["event"], e.get("reason")) for e in events]
    assert kinds == [("playback_started", None), ("playback_stopped", "drained")] * 2


async def test_paced_wav_sink_behaves_like_a_speaker(tmp_path: Path) -> None:
    out = tmp_path / "out.wav"
    trace, events = traced()
    sink = WavSink(out, trace, volume=100, buffer_ms=120, realtime_pace=True)
    await sink.start()
    for c in chunks(440, 2.0, 24_000):
        sink.write(c)
    await asyncio.sleep(0.6)
    assert sink.playing
    played = sink.stop()
    assert 250 < played < 1000  # real-time consumption, minus the jitter buffer
    sink.begin()
    for c in chunks(440, 0.4, 24_000):
        sink.write(c)
    t0 = time.monotonic()
    assert await asyncio.wait_for(sink.drain(), 5) == 400
    assert time.monotonic() - t0 >= 0.3  # drain waited for the audio to "play"
    await sink.aclose()
    got, rate = read_wav(out)
    assert len(got) / rate * 1000 == pytest.approx(played + 400, abs=25)
    assert [e.get("reason") for e in events if e["event"] == "playback_stopped"] == ["stopped", "drained"]


async def test_jitter_buffer_holds_playback_until_enough_is_queued(tmp_path: Path) -> None:
    trace, events = traced()
    sink = WavSink(tmp_path / "out.wav", trace, buffer_ms=200, realtime_pace=True)
    await sink.start()
    sink.begin()
    sink.write(chunks(440, 0.1, 24_000, chunk_ms=100)[0])  # 100 ms < 200 ms buffer: not started
    # The marker: a twin sink without a jitter buffer, started later on the same loop, plays the same 100 ms
    # through its own real-time clock. Our sink's clock ticked at least as often meanwhile, and did not start.
    twin = WavSink(tmp_path / "twin.wav", EventBus(), buffer_ms=0, realtime_pace=True)
    await twin.start()
    twin.write(chunks(440, 0.1, 24_000, chunk_ms=100)[0])
    assert await asyncio.wait_for(twin.drain(), 5) == 100
    await twin.aclose()
    assert not any(e["event"] == "playback_started" for e in events)
    assert await asyncio.wait_for(sink.drain(), 5) == 100  # drain() = the stream is complete: play it
    assert [e["event"] for e in events] == ["playback_started", "playback_stopped"]
    await sink.aclose()


async def test_unwritable_wav_output_names_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "missing-dir" / "out.wav"
    sink = open_sink(AudioSettings(output=f"wav:{bad}"), EventBus())
    with pytest.raises(OSError, match="missing-dir/out.wav': cannot write the file"):
        await sink.start()


# --- chimes ----------------------------------------------------------------------------------------------


def test_builtin_chimes_are_short_soft_and_click_free() -> None:
    chimes = load_chimes(ChimeSettings())
    assert set(chimes) == set(CHIME_NAMES)
    for name, chunk in chimes.items():
        assert chunk is not None
        x = np.frombuffer(chunk.pcm, "<i2").astype(float)
        assert 100 < chunk.duration_ms < 600, name
        assert 0.2 * FULL < np.max(np.abs(x)) < 0.5 * FULL, name
        assert abs(x[0]) < 0.01 * FULL and abs(x[-1]) < 0.01 * FULL, f"{name} starts or ends with a click"
    wake = np.frombuffer(chimes["wake"].pcm, "<i2")  # type: ignore[union-attr]
    half = len(wake) // 3
    assert peak_hz(wake[:half], 24_000) < peak_hz(wake[-half:], 24_000), "the wake chime should rise"


def test_chimes_can_be_off_or_a_wav(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "ding.wav", tone(1000, 0.2, 44_100), 44_100, channels=2)
    chimes = load_chimes(ChimeSettings(wake=str(path), done="", error="builtin"))
    assert chimes["done"] is None
    wake = chimes["wake"]
    assert wake is not None and wake.rate_hz == 44_100 and wake.duration_ms == pytest.approx(200, abs=1)


def test_missing_chime_wav_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioFileError, match=rf'chimes.error = "{missing}": .*file not found'):
        load_chimes(ChimeSettings(error=str(missing)))
