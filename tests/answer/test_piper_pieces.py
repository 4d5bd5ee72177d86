"""Piper in pieces (daemon.answer.piper_pieces) with the real en_US-joe-medium voice: a sentence starts playing
before all of it is rendered, sounds the same as the whole voice, and is as loud."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from daemon.answer.piper_pieces import CONTEXT_FRAMES
from daemon.answer.voice import LocalVoice
from daemon.audio.frames import AudioChunk
from daemon.config.models import ModelError, piper_voice_path
from daemon.config.settings import FallbackSettings, Settings

LONG_SENTENCE = "The weather today is mild and dry, with a gentle breeze from the west and a clear sky all afternoon."


@pytest.fixture(scope="module")
def voice(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalVoice]:
    models_dir = Settings().models_dir
    try:
        piper_voice_path(FallbackSettings().voice, models_dir)
    except ModelError as e:
        pytest.fail(f"the test needs the real voice: {e}")
    v = LocalVoice(FallbackSettings(), models_dir)

    async def ready() -> None:
        v.enable_pieces(tmp_path_factory.mktemp("pieces"))
        await v.load()
        assert await asyncio.wait_for(v.pieces_ready(), 120), "the real voice could not be cut into pieces"

    asyncio.run(ready())
    yield v
    asyncio.run(v.close())


def pcm(chunks: list[AudioChunk]) -> np.ndarray:
    return np.frombuffer(b"".join(c.pcm for c in chunks), "<i2").astype(np.float64)


def rms_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-9))


async def test_a_long_sentence_starts_playing_before_it_is_rendered(voice: LocalVoice) -> None:
    before = voice.sentences_synthesized
    stream = voice.speak(LONG_SENTENCE, in_pieces=True)
    first = await asyncio.wait_for(anext(stream), 30)
    rendered_at_first = voice.sentences_synthesized - before
    rest = [c async for c in stream]
    assert rendered_at_first == 0, "the first audio came only once the whole sentence was rendered"
    assert first.duration_ms < 1000 < sum(c.duration_ms for c in rest)
    assert voice.sentences_synthesized - before == 1


async def test_pieces_are_about_as_loud_as_whole_sentences(voice: LocalVoice) -> None:
    """Piper scales each sentence to its own peak (a quiet short one up by 9 dB); pieces use one gain per voice,
    so a sentence with a low peak comes out a little quieter: within 3 dB on average, 6 dB each."""
    differences = []
    for text in ("It is noon.", LONG_SENTENCE, "Sorry, I cannot reach the cloud right now."):
        whole = pcm([c async for c in voice.speak(text)])
        pieced = pcm([c async for c in voice.speak(text, in_pieces=True)])
        differences.append(rms_db(pieced) - rms_db(whole))
        assert np.max(np.abs(pieced)) <= 32767
    assert all(abs(d) < 6.0 for d in differences) and abs(float(np.mean(differences))) < 3.0, differences


def test_windows_give_the_samples_of_the_whole_decoder(voice: LocalVoice) -> None:
    """The seams are inaudible because there are none: window by window equals the whole run, sample for sample
    (the cut checks this too when it is made; here on a longer sentence, with the voice's own noise)."""
    pieces, piper = voice.pieces, voice.piper
    assert pieces is not None and piper is not None
    ids = piper.phonemes_to_ids(piper.phonemize(LONG_SENTENCE)[0])
    z = pieces.latent(pieces.inputs(ids, 0.667, 1.0, 0.8))
    whole = np.asarray(pieces.decoder.run(None, {pieces.cut_name: z})[0]).reshape(-1)
    frames = z.shape[2]
    windows = list(pieces.decode(z, threading.Event()))
    assert frames > 4 * CONTEXT_FRAMES and len(windows) >= 3
    joined = np.concatenate(windows)
    assert len(joined) == len(whole) == frames * pieces.hop
    assert np.max(np.abs(joined - whole)) < 1e-4 * np.max(np.abs(whole))


async def test_the_cut_is_kept_for_the_next_start(voice: LocalVoice) -> None:
    cache = voice.cache_dir
    assert cache is not None
    files = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert {p.name for p in files} == {"cut.json", "front.onnx", "decoder.onnx"}
    again = LocalVoice(FallbackSettings(), Settings().models_dir)
    again.enable_pieces(cache)
    try:
        assert await asyncio.wait_for(again.pieces_ready(), 60)
    finally:
        await again.close()
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == files
