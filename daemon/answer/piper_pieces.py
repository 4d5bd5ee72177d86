"""Piper in pieces: a sentence's first audio before the whole sentence is rendered.

Piper renders a sentence in one ONNX run whose time grows with the sentence (about 80 ms for "It is noon.",
0.8 s of audio, on this 2-core machine under load): its first sample waits for its last. Here the voice's graph
is cut in two (with the onnx package, once, in the background after the voice loaded): the front (text encoder,
duration predictor and flow: phonemes → the latent frames z, one run per sentence, about a third of the time)
and the HiFi-GAN decoder, which is convolutional along time and so can run on windows of frames. Each window,
decoded with CONTEXT_FRAMES of its neighbours on either side, gives the very samples the whole run gives
(checked on every cut, below: the pieces must match the whole voice within MAX_ERROR of its peak). The first
window is short, so the first audio comes after the front and one small decode; the later, longer windows are
decoded while the first ones play.

Loudness: Piper scales each sentence to its own peak, known only at the sentence's end. Pieces are scaled by
one gain per voice instead, measured on CHECK_TEXT when the cut is made (sentences vary about ±2.5 dB around
it, as they do with Piper's own scaling; the loudest are limited to full scale).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from daemon.audio.frames import AudioChunk

if TYPE_CHECKING:
    import onnxruntime
    from piper import PiperVoice

log = logging.getLogger(__name__)

DECODER_ENTRY = "/dec/conv_pre/Conv"
"""The decoder's first node in Piper's exported VITS graphs: its input is the cut (the latent frames z)."""
CONTEXT_FRAMES = 12
"""Neighbouring frames decoded on each side of a window (measured: 8 differ by -52 dB, 12 match exactly)."""
FIRST_FRAMES = 8
"""The shortest first window, in frames (256 samples, 11.6 ms at 22,050 Hz: 93 ms of audio; decoded with its
12 frames of right context, ~20 % of "It is noon."). Each next window is twice as long as the one before (up
to MAX_FRAMES), so it is decoded while the one before plays."""
MAX_FRAMES = 128
"""The longest window (1.5 s of audio): bounds the decoder's working memory (its arena keeps its peak)."""
SAFETY = 2.0
"""The decoder is assumed this much slower than measured when the cut was made (load varies)."""
MAX_DECODE_RATIO = 0.4
"""Slower than this (decode seconds per audio second, times SAFETY), a window could not be ready before the
one before it has played: the voice then renders whole sentences (a gap would be worse than the wait)."""
CHECK_TEXT = "Hello, this is how I sound when I read a sentence aloud."
MAX_ERROR = 1e-3
"""Largest difference allowed between the pieces and the whole voice, as a share of the peak (-60 dB)."""
HEADROOM = 1.25
"""The gain puts CHECK_TEXT's peak this far below full scale (louder sentences are limited to full scale)."""


CUT_FILE, FRONT_FILE, DECODER_FILE = "cut.json", "front.onnx", "decoder.onnx"
CUT_TIMEOUT_S = 300.0
"""The cut reads the whole voice into memory and takes ~3 s here (longer on a Pi): it runs in a child process,
so that its peak memory (~400 MB) is returned when it ends, and is kept on disk for the next start."""


class PiecesUnavailable(Exception):
    """This voice cannot be cut (another graph layout, several speakers, no onnx): whole sentences it is."""


@dataclass(frozen=True)
class PiperPieces:
    """The cut voice: `render` yields a sentence's audio window by window."""

    front: onnxruntime.InferenceSession
    decoder: onnxruntime.InferenceSession
    cut_name: str
    """Name of the cut tensor (the decoder's input)."""
    hop: int
    """Audio samples per latent frame."""
    gain: float
    first_frames: int = FIRST_FRAMES

    @classmethod
    def open(cls, voice: PiperVoice, path: Path, cache_dir: Path, options: Callable[[], Any]) -> PiperPieces:
        """The pieces of `voice` (loaded from `path`), cut once into `cache_dir` and checked against the whole
        voice; raises PiecesUnavailable. `options()` gives the SessionOptions the voice itself uses. Blocking
        CPU work (seconds the first time): run it off the loop."""
        if voice.config.num_speakers > 1:
            raise PiecesUnavailable("a voice with several speakers")
        import onnxruntime

        stat = path.stat()
        where = cache_dir / f"{path.stem}-{stat.st_size}-{int(stat.st_mtime)}"
        if not (where / CUT_FILE).is_file():
            _cut_in_child(path, where)
        try:
            cut = json.loads((where / CUT_FILE).read_text(encoding="utf-8"))
            front, decoder = (
                onnxruntime.InferenceSession(
                    str(where / name), sess_options=options(), providers=["CPUExecutionProvider"]
                )
                for name in (FRONT_FILE, DECODER_FILE)
            )
        except (OSError, ValueError, KeyError, RuntimeError) as e:  # a damaged cache: cut again next time
            shutil.rmtree(where, ignore_errors=True)
            raise PiecesUnavailable(f"the cut in {where} could not be read ({e}); it is made again next time") from e
        return cls(front, decoder, str(cut["latent"]), voice.config.hop_length, 1.0)._checked(voice)

    def _checked(self, voice: PiperVoice) -> PiperPieces:
        """The pieces of CHECK_TEXT without noise (deterministic) against the whole voice's run; and the gain."""
        ids = voice.phonemes_to_ids([p for sentence in voice.phonemize(CHECK_TEXT) for p in sentence])
        quiet = self.inputs(ids, 0.0, voice.config.length_scale, 0.0)
        whole = np.asarray(voice.session.run(None, quiet)[0]).reshape(-1)
        pieced = np.concatenate(list(self.decode(self.latent(quiet), threading.Event())))  # (first runs: slower)
        z = self.latent(quiet)[:, :, :MAX_FRAMES]
        started = time.perf_counter()
        self.decoder.run(None, {self.cut_name: z})
        ratio = (time.perf_counter() - started) / (z.shape[2] * self.hop / voice.config.sample_rate) * SAFETY
        peak = float(np.max(np.abs(whole)))
        if len(pieced) != len(whole) or peak <= 0:
            raise PiecesUnavailable(f"the pieces give {len(pieced)} samples, the whole voice {len(whole)}")
        error = float(np.max(np.abs(pieced - whole))) / peak
        if error > MAX_ERROR:
            raise PiecesUnavailable(f"the pieces differ from the whole voice by {error:.2e} of its peak")
        if ratio >= MAX_DECODE_RATIO:
            raise PiecesUnavailable(f"this machine renders too slowly for pieces ({ratio / SAFETY:.2f} s per s)")
        # the next window (2 w frames and 2 contexts) must be decoded while this one (w frames) plays
        first = max(FIRST_FRAMES, math.ceil(2 * CONTEXT_FRAMES * ratio / (1 - 2 * ratio)))
        log.info(
            "Piper renders in pieces (first %d frames; %.2f s per s; within %.0e of the whole)",
            first,
            ratio / SAFETY,
            error,
        )
        return PiperPieces(self.front, self.decoder, self.cut_name, self.hop, 1.0 / (peak * HEADROOM), first)

    def render(
        self, voice: PiperVoice, text: str, volume: float, stop: threading.Event, *, in_pieces: bool
    ) -> Iterator[AudioChunk]:
        """`text`'s audio (Piper's own sentence split inside it), window by window when `in_pieces`, else each
        sentence at once and scaled to its own peak, exactly as Piper does; stops when `stop` is set. Worker."""
        c = voice.config
        for phonemes in voice.phonemize(text):
            if stop.is_set():
                return
            if not phonemes:
                continue
            z = self.latent(
                self.inputs(voice.phonemes_to_ids(phonemes), c.noise_scale, c.length_scale, c.noise_w_scale)
            )
            if in_pieces:
                for audio in self.decode(z, stop):
                    yield _chunk(audio * (self.gain * volume), c.sample_rate)
                continue
            audio = np.concatenate(list(self.decode(z, stop, first_frames=MAX_FRAMES)))  # bounded memory
            peak = float(np.max(np.abs(audio)))
            yield _chunk(audio * (volume / peak) if peak > 1e-8 else np.zeros_like(audio), c.sample_rate)

    def latent(self, args: dict[str, np.ndarray]) -> np.ndarray:
        """The front: a sentence's phoneme ids (`inputs`) → its latent frames z, shape (1, channels, frames)."""
        return np.asarray(self.front.run(None, args)[0])

    def decode(self, z: np.ndarray, stop: threading.Event, first_frames: int = 0) -> Iterator[np.ndarray]:
        """The latent frames → audio (float), window by window (the first `first_frames` long, default the
        voice's); stops when `stop` is set."""
        frames = z.shape[2]
        first = first_frames or self.first_frames
        start, size = 0, first
        while start < frames and not stop.is_set():
            end = min(frames, start + size)
            if frames - end < first // 2:
                end = frames  # no sliver of a window at the end
            size = min(size * 2, MAX_FRAMES)
            lo, hi = max(0, start - CONTEXT_FRAMES), min(frames, end + CONTEXT_FRAMES)
            audio = np.asarray(self.decoder.run(None, {self.cut_name: z[:, :, lo:hi]})[0]).reshape(-1)
            skip = (start - lo) * self.hop
            yield audio[skip : skip + (end - start) * self.hop]
            start = end

    @staticmethod
    def inputs(ids: list[int], noise: float, length: float, noise_w: float) -> dict[str, np.ndarray]:
        """The voice's inputs for one sentence's phoneme ids and its scales (noise, length, noise width)."""
        return {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": np.array([noise, length, noise_w], dtype=np.float32),
        }


def _chunk(audio: np.ndarray, rate_hz: int) -> AudioChunk:
    return AudioChunk((np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes(), rate_hz, 1)


def _cut_in_child(path: Path, where: Path) -> None:
    """Run `cut` in a child Python (this module as a script); raises PiecesUnavailable with its reason."""
    where.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "daemon.answer.piper_pieces", str(path), str(where)],
            capture_output=True,
            text=True,
            timeout=CUT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PiecesUnavailable(f"cutting the voice failed ({e})") from e
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise PiecesUnavailable(reason.removeprefix("PiecesUnavailable: "))


def cut(path: Path, where: Path) -> None:
    """Cut the voice file `path` into its front and its decoder, written to the folder `where` (atomically:
    a half-written cut is never read). Needs the onnx package."""
    try:
        import onnx
        import onnx.utils
    except ImportError as e:
        raise PiecesUnavailable(f"the onnx package is missing ({e})") from e
    model = onnx.load(str(path))
    entry = [n for n in model.graph.node if n.name == DECODER_ENTRY]
    inputs = [i.name for i in model.graph.input]
    if len(entry) != 1 or inputs != ["input", "input_lengths", "scales"] or len(model.graph.output) != 1:
        raise PiecesUnavailable(f"an unknown graph layout (inputs {inputs}, {len(entry)} decoder entries)")
    latent, output = entry[0].input[0], model.graph.output[0].name
    extractor = onnx.utils.Extractor(model)
    partial = where.with_name(where.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    onnx.save(extractor.extract_model(inputs, [latent]), str(partial / FRONT_FILE))
    onnx.save(extractor.extract_model([latent], [output]), str(partial / DECODER_FILE))
    (partial / CUT_FILE).write_text(json.dumps({"latent": latent, "voice": str(path)}), encoding="utf-8")
    shutil.rmtree(where, ignore_errors=True)
    partial.rename(where)


if __name__ == "__main__":  # python -m daemon.answer.piper_pieces VOICE.onnx FOLDER (what open() runs)
    try:
        cut(Path(sys.argv[1]), Path(sys.argv[2]))
    except PiecesUnavailable as e:
        sys.exit(f"PiecesUnavailable: {e}")
