"""On-device recognition of the declared commands: PocketSphinx constrained to a grammar of the templates.

Why PocketSphinx: its wheel carries the en-US acoustic model and dictionary (nothing is downloaded, on
x86-64 and aarch64 alike), it takes a JSGF grammar, and a grammar-constrained search of a whole request
with the phone loop beside it costs under 10 % of one core per second of request (scripts/bench_commands.py).
Out-of-grammar speech is rejected twice: the decoder's best path must be a whole declared sentence (hassil
matches it back; a pruned, partial path is no command), and the sentence must fit the audio nearly as well
as a free phone loop does (a log-likelihood ratio per speech frame, `commands.min_score`): a grammar forces
every sound onto some declared sentence, and only this comparison tells "turn on the kitchen radio" from
"turn on the kitchen light".

Three things make that ratio and the words right (scripts/bench_commands.py measures each):
- Only the speech is decoded, with `SPEECH_MARGIN_S` around it (`speech_span`). The decoder normalizes the
  cepstrum by the mean of everything it is given (batch CMN); the pre-roll and the end-of-speech silence the
  endpointer waits for are a third of a short command, and with them the espeak-ng voices lost short words
  (on/off, ten/two): intent and slots exact went from 94.6 % to 98.2 % of clean test requests.
- Both decoders score every senone in every frame (`compallsen`). PocketSphinx scores a path against the
  best senone it evaluated in that frame; a grammar search and a phone loop evaluate different senones, so
  only with all of them evaluated do the two path scores share one reference and subtract to a likelihood
  ratio.
- The two scores are read in the same units. Lattice scores are in full log units; the phone loop's
  segments are in the search's internal units, 2**10 smaller (SENSCR_SHIFT in PocketSphinx): read as they
  come, the phone loop weighed 1/1024 of what it should and the "ratio" was the grammar's score alone. The
  grammar's path score is read from the lattice file, because a long, poorly fitting word's score
  underflows the probability the Python API returns it as.

The lattice posterior was measured and separates nothing out of domain (a wrong sentence that fits the
grammar well has posteriors near 1). The decoder is not thread-safe and decoding blocks: `Recognizer` is
used from one worker thread only (see daemon.intents.responder).
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from daemon.intents.grammar import jsgf, vocabulary
from daemon.intents.spec import Command, CommandBook

log = logging.getLogger(__name__)

FILLERS = ("<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]")
BOUNDARIES = ("<s>", "</s>")
"""Lattice entries that are no audio: <s> carries the silence-insertion penalty, </s> repeats the last silence."""
SENSCR_SHIFT = 10
"""PocketSphinx keeps search scores shifted right by 10 bits; lattices shift them back, segments of the phone
loop (allphone search) do not."""
FRAME_SAMPLES = 160
"""10 ms at 16 kHz: the decoder's frame."""
SPEECH_MARGIN_S = 0.4
"""Silence kept either side of the speech. Measured on the test speech: with 0.2 s noisy requests lost words,
0.3 s and 0.5 s let one more held-out out-of-domain request through."""
SPEECH_LEVEL = 0.2
"""A 10 ms frame is speech when its level is this far up from the request's floor (10th percentile) to its
peak (99th), in dB (relative, so it holds in a quiet room and in 10 dB of noise alike; 10 % measured the same)."""
MIN_CONTRAST_DB = 6.0
"""Under this from floor to peak no speech stands out: the whole request is decoded."""


class RecognizerError(RuntimeError):
    """The recognizer cannot be built (engine missing, grammar refused)."""


@dataclass(frozen=True, slots=True)
class Recognition:
    """What the recognizer made of one request: `command` is None when it is not a declared command."""

    command: Command | None
    text: str
    """The decoder's best words ("" = nothing usable)."""
    score: float
    """Log-likelihood ratio per 10 ms speech frame of the sentence against a free phone loop (see min_score)."""
    confidence: float
    """The score as 0–1: 0.5 at commands.min_score, higher = fits better (only what is acted on is ≥ 0.5)."""
    ms: float
    """Decoding time (wall clock, in the worker thread)."""
    why_not: str = ""


def model_dir() -> Path:
    """The acoustic model and dictionary inside the pocketsphinx wheel."""
    from pocketsphinx import get_model_path

    return Path(get_model_path()) / "en-us"


@functools.cache
def dictionary_words() -> frozenset[str]:
    """Every word the wheel's CMU dictionary can pronounce (alternates like `the(2)` folded)."""
    words: set[str] = set()
    with open(model_dir() / "cmudict-en-us.dict", encoding="utf-8") as f:
        for line in f:
            word = line.split(" ", 1)[0]
            words.add(word.split("(", 1)[0])
    return frozenset(words)


def unknown_words(book: CommandBook) -> list[str]:
    return sorted(vocabulary(book) - dictionary_words())


def speech_span(pcm16k: bytes) -> tuple[int, int]:
    """Byte range to decode: the speech with SPEECH_MARGIN_S either side (all of it when no speech stands out)."""
    samples = np.frombuffer(pcm16k[: len(pcm16k) & ~1], dtype=np.int16)
    n = len(samples) // FRAME_SAMPLES
    everything = (0, len(pcm16k))
    if n < 10:
        return everything
    frames = samples[: n * FRAME_SAMPLES].astype(np.float64).reshape(n, FRAME_SAMPLES)
    level_db = 10.0 * np.log10(np.mean(frames**2, axis=1) + 1.0)
    floor, peak = np.percentile(level_db, [10, 99])
    if peak - floor < MIN_CONTRAST_DB:
        return everything
    loud = level_db > floor + SPEECH_LEVEL * (peak - floor)
    starts = np.flatnonzero(np.convolve(loud.astype(np.int32), np.ones(3, dtype=np.int32), "valid") == 3)
    if len(starts) == 0:  # a click, no 30 ms of speech anywhere
        return everything
    margin = round(SPEECH_MARGIN_S * 16000 / FRAME_SAMPLES)  # in frames
    first = max(0, int(starts[0]) - margin)
    last = int(starts[-1]) + 3 + margin
    end = len(pcm16k) if last >= n else last * FRAME_SAMPLES * 2
    return first * FRAME_SAMPLES * 2, end


class Recognizer:
    """Decodes one whole request at a time against the declared sentences."""

    def __init__(self, book: CommandBook, min_score: float) -> None:
        self.book = book
        self.min_score = min_score
        t0 = time.monotonic()
        try:
            from pocketsphinx import Decoder
        except ImportError as e:  # pragma: no cover - a dependency of hark
            raise RecognizerError(f"pocketsphinx is not installed ({e}); run scripts/install-deps") from e
        unknown = unknown_words(book)
        if unknown:
            raise RecognizerError(
                f"the recognizer's dictionary has no pronunciation for: {', '.join(unknown)}; "
                "spell numbers as words and use dictionary words in [commands] sentences and lists"
            )
        model = model_dir()
        # batch CMN: the whole (trimmed) request is decoded at once, so its own mean normalizes it (live CMN
        # starts from a generic estimate and loses the first words of short commands); compallsen: see above
        common = {
            "hmm": str(model / "en-us"),
            "dict": str(model / "cmudict-en-us.dict"),
            "lm": None,
            "cmn": "batch",
            "compallsen": True,
            "loglevel": "FATAL",
        }
        self._decoder = Decoder(**common)
        grammar = jsgf(book)
        try:
            self._decoder.add_jsgf_string("hark", grammar.encode())
            self._decoder.activate_search("hark")
        except Exception as e:
            raise RecognizerError(f"the command grammar was refused ({e}):\n{grammar}") from e
        self._phones = Decoder(**common, allphone=str(model / "en-us-phone.lm.bin"))
        self._ln_per_unit = float(self._decoder.logmath.log_to_ln(1))
        self._phone_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hark-commands-phones")
        self._scratch = tempfile.TemporaryDirectory(prefix="hark-commands-")
        self._lattice = Path(self._scratch.name) / "lattice.txt"
        self.load_s = time.monotonic() - t0
        log.info("local commands: %d intents, recognizer ready in %.2f s", len(book.by_name), self.load_s)

    def recognize(self, pcm16k: bytes) -> Recognition:
        """The command in this audio (16 kHz PCM16 mono), or a Recognition saying why there is none."""
        t0 = time.monotonic()
        if len(pcm16k) < 3200:  # under 100 ms: nothing to decode
            return Recognition(None, "", 0.0, 0.0, 0.0, "no audio")
        start, end = speech_span(pcm16k)
        pcm16k = pcm16k[start:end]
        # the phone loop runs in a second thread, beside the grammar search: the decision then costs the
        # longer of the two, not their sum (pocketsphinx releases the GIL while it decodes)
        phones = self._phone_thread.submit(_decode, self._phones, pcm16k)
        segs = _decode(self._decoder, pcm16k)
        words = [s for s in segs if s.word not in FILLERS]
        text = " ".join(s.word.split("(", 1)[0] for s in words)
        command = self.book.match(text) if text else None
        if command is None:
            phones.result()  # the phone decoder must be idle before the next request
            why = "not a whole declared sentence" if text else "no sentence fits"
            return Recognition(None, text, 0.0, 0.0, _ms(t0), why)
        # the sentence against a free phone loop on the same audio: speech that is not this sentence is
        # fitted far better by some other phone sequence than by the grammar's best path
        speech_frames = sum(s.end_frame - s.start_frame + 1 for s in words)
        ratio = self._path_log_score(segs) - _phone_loop_log_score(phones.result())
        score = ratio / max(1, speech_frames)
        confidence = 1.0 / (1.0 + math.exp(-(score - self.min_score)))
        if score < self.min_score:
            why = f"score {score:.2f} < commands.min_score {self.min_score:g}"
            return Recognition(None, text, score, confidence, _ms(t0), why)
        return Recognition(command, text, score, confidence, _ms(t0))

    def _path_log_score(self, segs: list[Any]) -> float:
        """Natural-log acoustic score of the grammar's best path, from the lattice file (exact, no underflow)."""
        self._decoder.get_lattice().write(str(self._lattice))
        nodes, edges = _read_lattice(self._lattice.read_text(encoding="utf-8"))
        starting: dict[tuple[str, int], list[int]] = {}
        for node, key in nodes.items():
            starting.setdefault(key, []).append(node)
        total = 0
        for seg, after in zip(segs, segs[1:], strict=False):
            if seg.word in BOUNDARIES:
                continue
            # the link that leaves this word for the next one (several nodes can share a word and start frame:
            # one per grammar state; the best path took the best of them)
            scores = [
                score
                for node in starting.get((seg.word, seg.start_frame), [])
                for nxt, score in edges.get(node, [])
                if nodes[nxt][1] == after.start_frame
            ]
            if not scores:  # pragma: no cover - every link of the best path is in the lattice
                raise RecognizerError(f"the lattice has no link from {seg.word} at frame {seg.start_frame}")
            total += max(scores)
        return total * self._ln_per_unit

    def close(self) -> None:
        self._phone_thread.shutdown(wait=False, cancel_futures=True)
        self._scratch.cleanup()


def _decode(decoder: Any, pcm16k: bytes) -> list[Any]:
    decoder.start_utt()
    decoder.process_raw(pcm16k, full_utt=True)
    decoder.end_utt()
    return list(decoder.seg()) if decoder.hyp() is not None else []


def _read_lattice(text: str) -> tuple[dict[int, tuple[str, int]], dict[int, list[tuple[int, int]]]]:
    """A PocketSphinx lattice file: node → (word, start frame); node → [(next node, acoustic score in log units)]."""
    nodes: dict[int, tuple[str, int]] = {}
    edges: dict[int, list[tuple[int, int]]] = {}
    section = ""
    for line in text.splitlines():
        parts = line.split()
        if not parts or not parts[0].lstrip("-").isdigit():
            section = parts[0] if parts else ""
            continue
        if section == "Nodes":
            nodes[int(parts[0])] = (parts[1], int(parts[2]))
        elif section == "Edges":
            edges.setdefault(int(parts[0]), []).append((int(parts[1]), int(parts[2])))
    return nodes, edges


def _phone_loop_log_score(segs: list[Any]) -> float:
    """Natural-log acoustic score of the phone loop's path (its segments are in the search's shifted units)."""
    return float(sum(math.log(s.ascore) for s in segs)) * (1 << SENSCR_SHIFT)


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000.0, 1)
