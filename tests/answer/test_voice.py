"""The local Piper voice with the real en_US-joe-medium model, and the sentence splitter."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
import soxr
import webrtcvad
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.answer.voice import LocalVoice, SentenceSplitter, VoiceError
from daemon.audio.frames import AudioChunk
from daemon.config.models import ModelError, piper_voice_path
from daemon.config.settings import FallbackSettings, Settings

FIVE_SENTENCES = (
    "Hello there. Dr. Smith measured 3.5 meters of rain today! Is that right? "
    "The weather is fine, thanks for asking. Goodbye now."
)


@pytest.fixture(scope="module")
def models_dir() -> Path:
    path = Settings().models_dir
    try:
        piper_voice_path(FallbackSettings().voice, path)
    except ModelError as e:
        pytest.fail(f"the test needs the real voice: {e}")
    return path


@pytest.fixture(scope="module")
def voice(models_dir: Path) -> Iterator[LocalVoice]:
    """One loaded voice for the module: loading takes about a second."""
    v = LocalVoice(FallbackSettings(), models_dir)
    asyncio.run(v.load())
    yield v
    asyncio.run(v.close())


async def collect(chunks: AsyncIterator[AudioChunk]) -> list[AudioChunk]:
    return [c async for c in chunks]


def speech_fraction(chunks: list[AudioChunk]) -> float:
    """Share of 30 ms frames webrtcvad calls speech, after resampling to 16 kHz."""
    pcm = np.frombuffer(b"".join(c.pcm for c in chunks), dtype=np.int16)
    pcm16k = soxr.resample(pcm, chunks[0].rate_hz, 16_000).astype(np.int16).tobytes()
    vad = webrtcvad.Vad(3)
    step = 480 * 2
    frames = [pcm16k[i : i + step] for i in range(0, len(pcm16k) - step + 1, step)]
    return sum(vad.is_speech(f, 16_000) for f in frames) / len(frames)


# --- voice files ------------------------------------------------------------------------------------------


async def test_missing_voice_names_path_and_fix(tmp_path: Path) -> None:
    v = LocalVoice(FallbackSettings(voice="en_US-nobody-medium"), tmp_path)
    with pytest.raises(VoiceError, match=r"not found at .*en_US-nobody-medium\.onnx: run scripts/fetch-models"):
        await v.load()
    assert not v.loaded
    with pytest.raises(VoiceError, match="not found"):  # fallback.load = "start": the daemon start loads it
        await v.start()
    with pytest.raises(VoiceError, match="not found"):  # speaking loads, and fails the same clear way
        await collect(v.speak("Hello."))
    await v.close()


async def test_bad_voice_setting_says_what_is_expected(tmp_path: Path) -> None:
    v = LocalVoice(FallbackSettings(voice="voices/joe"), tmp_path)
    with pytest.raises(VoiceError, match="expected a voice name like en_US-joe-medium or a path ending in"):
        await v.load()
    await v.close()


@pytest.fixture
def broken_voice(tmp_path: Path) -> Path:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx model")
    Path(f"{bad}.json").write_text("{}")
    return bad


async def test_broken_voice_file_is_a_voice_error(tmp_path: Path, broken_voice: Path) -> None:
    bad = broken_voice
    v = LocalVoice(FallbackSettings(voice=str(bad)), tmp_path)
    with pytest.raises(VoiceError, match=r"cannot load Piper voice .*broken\.onnx"):
        await v.load()
    await v.close()


# --- speech -------------------------------------------------------------------------------------------------


async def test_synthesis_is_speech_of_plausible_length(voice: LocalVoice) -> None:
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    chunks = await collect(voice.speak(text))
    seconds = sum(c.duration_ms for c in chunks) / 1000
    words = len(text.split())
    assert 0.15 * words < seconds < 0.8 * words, f"{seconds:.2f} s of audio for {words} words"
    assert {c.rate_hz for c in chunks} == {22_050} and {c.channels for c in chunks} == {1}
    assert speech_fraction(chunks) > 0.5
    silence = [AudioChunk(bytes(22_050 * 2), 22_050)]
    assert speech_fraction(silence) == 0.0  # the check itself can tell speech from nothing


async def test_volume_scales_the_output(voice: LocalVoice) -> None:
    chunks = await collect(voice.speak("Testing the volume."))
    peak = max(int(np.abs(np.frombuffer(c.pcm, dtype=np.int16).astype(np.int32)).max()) for c in chunks)
    assert peak <= voice.settings.volume * 32767 + 1
    assert peak > 0.5 * voice.settings.volume * 32767  # normalised, then scaled: not silent


async def test_empty_text_says_nothing_and_wrong_type_is_refused(voice: LocalVoice) -> None:
    assert await collect(voice.speak("   ")) == []
    with pytest.raises(TypeError, match="expects str, got bytes"):
        await collect(voice.speak(b"hello"))  # type: ignore[arg-type]


# --- streaming ---------------------------------------------------------------------------------------------


async def test_first_sentence_comes_out_before_later_ones_are_synthesized(voice: LocalVoice) -> None:
    before = voice.sentences_synthesized
    stream = voice.speak(FIVE_SENTENCES)
    first = await asyncio.wait_for(anext(stream), 30)
    done_at_first_chunk = voice.sentences_synthesized - before
    rest = await asyncio.wait_for(collect(stream), 60)
    assert first.duration_ms > 0
    assert done_at_first_chunk <= 2, "the whole text was synthesized before the first audio came out"
    assert voice.sentences_synthesized - before == 5
    assert len(rest) >= 4


async def test_chunks_keep_sentence_order(voice: LocalVoice) -> None:
    text = "One. This second sentence is clearly quite a lot longer than the first one ever was. Three."
    chunks = await collect(voice.speak(text))
    durations = [c.duration_ms for c in chunks]
    assert len(durations) == 3
    assert durations[1] > 2 * durations[0] and durations[1] > 2 * durations[2]


async def test_streamed_text_speaks_before_the_text_is_complete(voice: LocalVoice) -> None:
    first_audio = asyncio.Event()

    async def deltas() -> AsyncIterator[str]:
        for piece in ("Good mor", "ning. It is", " sunny", " today"):
            yield piece
        await asyncio.wait_for(first_audio.wait(), 30)  # the rest only comes once audio was heard
        yield ", with a light breeze."

    chunks: list[AudioChunk] = []
    async for chunk in voice.speak_stream(deltas()):
        chunks.append(chunk)
        first_audio.set()
    assert len(chunks) == 2
    assert speech_fraction(chunks) > 0.5


async def test_failing_text_source_raises_to_the_consumer(voice: LocalVoice) -> None:
    async def deltas() -> AsyncIterator[str]:
        yield "Fine so far. "
        raise ConnectionError("stream lost")

    with pytest.raises(ConnectionError, match="stream lost"):
        await asyncio.wait_for(collect(voice.speak_stream(deltas())), 30)


async def test_closing_the_stream_stops_synthesis(voice: LocalVoice) -> None:
    long_text = " ".join(f"This is sentence number {n} of a very long answer." for n in range(20))
    stream = voice.speak(long_text)
    await asyncio.wait_for(anext(stream), 30)
    await stream.aclose()  # barge-in
    at_close = voice.sentences_synthesized
    # The worker is FIFO: once this is spoken, nothing from the closed stream can still be pending.
    await asyncio.wait_for(collect(voice.speak("Done.")), 30)
    assert voice.sentences_synthesized <= at_close + 2  # at most the sentence in flight, plus "Done."


async def test_cancelling_the_task_stops_synthesis(voice: LocalVoice) -> None:
    long_text = " ".join(f"Here comes part {n} of an answer nobody wants to hear." for n in range(20))
    heard = asyncio.Event()
    got: list[AudioChunk] = []

    async def play() -> None:
        async for chunk in voice.speak(long_text):
            got.append(chunk)
            heard.set()

    task = asyncio.create_task(play())
    await asyncio.wait_for(heard.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    at_cancel, chunks_at_cancel = voice.sentences_synthesized, len(got)
    await asyncio.wait_for(collect(voice.speak("Done.")), 30)
    assert voice.sentences_synthesized <= at_cancel + 2
    assert len(got) == chunks_at_cancel  # no chunk arrived after the cancel


async def test_lazy_voice_loads_on_first_use(models_dir: Path) -> None:
    v = LocalVoice(FallbackSettings(load="lazy"), models_dir)
    await v.start()
    assert not v.loaded
    chunks = await asyncio.wait_for(collect(v.speak("Hi.")), 60)
    assert v.loaded and chunks
    await v.close()
    with pytest.raises(VoiceError, match="closed"):
        await collect(v.speak("Again."))


# --- sentence splitting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hello there. How are you?", ["Hello there.", "How are you?"]),
        ("Dr. Smith met Mrs. Jones at 3 p.m. today.", ["Dr. Smith met Mrs. Jones at 3 p.m. today."]),
        ("It costs 3.5 dollars. Cheap!", ["It costs 3.5 dollars.", "Cheap!"]),
        ("Use e.g. salt. Or i.e. pepper.", ["Use e.g. salt.", "Or i.e. pepper."]),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("Wait... what?! Really?", ["Wait...", "what?!", "Really?"]),
        ("Steps:\n1. Open it.\n2. Close it.", ["Steps:", "1. Open it.", "2. Close it."]),
        ("I have 3. You have 4.", ["I have 3.", "You have 4."]),
        ("J. R. R. Tolkien wrote it.", ["J. R. R. Tolkien wrote it."]),
        ("No punctuation at the end", ["No punctuation at the end"]),
        ("", []),
    ],
)
def test_split_cases(text: str, expected: list[str]) -> None:
    assert SentenceSplitter().split(text) == expected


def test_streamed_deltas_wait_for_the_next_character() -> None:
    s = SentenceSplitter()
    assert s.feed("It costs 3.") == []  # could be "3.5"
    assert s.feed("5 dollars. Dr.") == ["It costs 3.5 dollars."]
    assert s.feed(" Who is next") == []  # "Dr." is not an end
    assert s.flush() == "Dr. Who is next"
    assert s.flush() == ""


def test_long_text_without_punctuation_is_cut_at_a_comma_or_space() -> None:
    s = SentenceSplitter(max_chars=60)
    clause = "and then the long story went on, "
    pieces = s.split(clause * 6 + "the end")
    assert all(len(p) <= 60 for p in pieces)
    assert all(p.endswith(",") for p in pieces[:-1])
    words = SentenceSplitter(max_chars=40).split("word " * 30)
    assert all(len(p) <= 40 and not p.endswith("wor") for p in words)
    assert " ".join(words).split() == ["word"] * 30


def test_bad_splitter_input() -> None:
    with pytest.raises(ValueError, match="max_chars=5: expected at least 20"):
        SentenceSplitter(max_chars=5)
    with pytest.raises(TypeError, match="expects str, got int"):
        SentenceSplitter().feed(3)  # type: ignore[arg-type]


_TEXT = st.text(alphabet=st.sampled_from(list('ab .,!?3\n"Dr')), max_size=300)


@settings(max_examples=300, deadline=None)
@given(text=_TEXT, cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=12))
def test_streaming_splits_like_whole_text_and_loses_nothing(text: str, cuts: list[int]) -> None:
    whole = SentenceSplitter(max_chars=40).split(text)
    streamed_splitter = SentenceSplitter(max_chars=40)
    streamed: list[str] = []
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    for a, b in zip(bounds, bounds[1:], strict=False):
        streamed += streamed_splitter.feed(text[a:b])
    if rest := streamed_splitter.flush():
        streamed.append(rest)
    assert streamed == whole
    assert all(0 < len(p) <= 40 for p in whole)
    assert "".join("".join(whole).split()) == "".join(text.split())
