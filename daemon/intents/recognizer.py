"""On-device recognition of the declared commands: PocketSphinx constrained to a grammar of the templates.

Why PocketSphinx: its wheel carries the en-US acoustic model and dictionary (nothing is downloaded, on
x86-64 and aarch64 alike), it takes a JSGF grammar, and a grammar-constrained search of a whole request
with the phone loop beside it costs 10–15 % of one core per second of request (scripts/bench_commands.py).
Out-of-grammar speech is rejected twice: the decoder's best path must be a whole declared sentence (hassil
matches it back; a pruned, partial path is no command), and the sentence must fit the audio nearly as well
as a free phone loop does (a log-likelihood ratio per speech frame, `commands.min_score`): a grammar forces
every sound onto some declared sentence, and only this comparison tells "turn on the kitchen radio" from
"turn on the kitchen light".

Three things make that ratio and the words right (scripts/bench_commands.py measures each):
- Only the speech is decoded, with `SPEECH_MARGIN_S` around it (`speech_span`; the room's quiet
  from the pre-roll fills a margin the request ended too soon for). The decoder normalizes the
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
grammar well has posteriors near 1). The two searches run in two child processes, side by side
(daemon.intents.decoders: PocketSphinx holds the GIL while it decodes). `recognize` blocks until both have
answered, one request at a time: `Recognizer` is used from one worker thread only (see daemon.intents.responder).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from daemon.config.models import pocketsphinx_model_dir
from daemon.intents.decoders import DecoderError, DecoderProcess
from daemon.intents.grammar import jsgf, vocabulary
from daemon.intents.spec import Command, CommandBook

log = logging.getLogger(__name__)

FILLERS = ("<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]")
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
QUIET_DB = 3.0
"""A 10 ms frame is quiet (the room, no voice in it) within this of the request's floor. Where the last sound
ends, for deciding in the pause: in 10 dB of noise the speech level above ends up to 0.18 s before the last
word does (its quiet tail), so it is no sign that the speaker stopped."""


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


@functools.cache
def dictionary_words() -> frozenset[str]:
    """Every word the wheel's CMU dictionary can pronounce (alternates like `the(2)` folded)."""
    words: set[str] = set()
    with open(pocketsphinx_model_dir() / "cmudict-en-us.dict", encoding="utf-8") as f:
        for line in f:
            word = line.split(" ", 1)[0]
            words.add(word.split("(", 1)[0])
    return frozenset(words)


def unknown_words(book: CommandBook) -> list[str]:
    return sorted(vocabulary(book) - dictionary_words())


@dataclass(frozen=True, slots=True)
class SpeechSpan:
    """Where the speech is in a request and what is decoded of it (byte offsets into the request)."""

    start: int
    end: int
    """`request[start:end]`: the speech with up to SPEECH_MARGIN_S either side."""
    speech_end: int
    """Where the last 10 ms of speech ends (`end` when no speech stands out)."""
    sound_end: int
    """Where the last 10 ms above the room's quiet ends (QUIET_DB; the whole request when nothing stands out)."""
    pad: bytes = b""
    """The room's own quiet (from before the speech), appended when less than SPEECH_MARGIN_S followed it."""

    def audio(self, request: bytes) -> bytes:
        return request[self.start : self.end] + self.pad


def frame_levels_db(pcm16k: bytes) -> np.ndarray:
    """The level of each whole 10 ms frame, in dB."""
    samples = np.frombuffer(pcm16k[: len(pcm16k) & ~1], dtype=np.int16)
    n = len(samples) // FRAME_SAMPLES
    frames = samples[: n * FRAME_SAMPLES].astype(np.float64).reshape(n, FRAME_SAMPLES)
    return np.asarray(10.0 * np.log10(np.mean(frames**2, axis=1) + 1.0))


@dataclass(frozen=True, slots=True)
class _Levels:
    """Where a request's speech is, in 10 ms frames (None from `_find_speech`: no speech stands out)."""

    first_loud: int
    first_speech: int
    last_speech: int
    """One past the last frame of the last 30 ms of speech."""
    sound_end: int
    """One past the last frame above the room's quiet (QUIET_DB), at least `last_speech`."""


def _find_speech(level_db: np.ndarray) -> _Levels | None:
    if len(level_db) < 10:
        return None
    floor, peak = np.percentile(level_db, [10, 99])
    if peak - floor < MIN_CONTRAST_DB:
        return None
    loud = level_db > floor + SPEECH_LEVEL * (peak - floor)
    starts = np.flatnonzero(np.convolve(loud.astype(np.int32), np.ones(3, dtype=np.int32), "valid") == 3)
    if len(starts) == 0:  # a click, no 30 ms of speech anywhere
        return None
    last_speech = int(starts[-1]) + 3
    sound_end = int(np.flatnonzero(level_db > floor + QUIET_DB)[-1]) + 1
    return _Levels(int(np.flatnonzero(loud)[0]), int(starts[0]), last_speech, max(sound_end, last_speech))


def quiet_after_sound_ms(level_db: np.ndarray) -> int:
    """How long the request has been quiet since its last sound (0 while no speech stands out)."""
    found = _find_speech(level_db)
    return 0 if found is None else (len(level_db) - found.sound_end) * FRAME_SAMPLES * 1000 // 16000


def speech_span(pcm16k: bytes) -> SpeechSpan:
    """What to decode: the speech with SPEECH_MARGIN_S either side (all of it when no speech stands out).

    The daemon ends a request ~0.2 s into the pause (the turn model's judgement), less than the margin the
    decoder needs after the last word: the missing part is the room's quiet from the request's pre-roll, so
    the decoder sees the same margin however soon the request ended."""
    level_db = frame_levels_db(pcm16k)
    found = _find_speech(level_db)
    if found is None:
        return SpeechSpan(0, len(pcm16k), len(pcm16k), len(pcm16k))
    margin = round(SPEECH_MARGIN_S * 16000 / FRAME_SAMPLES)  # in frames
    first = max(0, found.first_speech - margin)
    last = found.last_speech + margin
    frame_bytes = FRAME_SAMPLES * 2
    end = len(pcm16k) if last >= len(level_db) else last * frame_bytes
    missing = last * frame_bytes - len(pcm16k)
    pad = b""
    room = pcm16k[: found.first_loud * frame_bytes]  # the pre-roll: the room before anyone spoke
    if missing > 0 and room:
        pad = (room * (missing // len(room) + 1))[:missing]
    return SpeechSpan(first * frame_bytes, end, found.last_speech * frame_bytes, found.sound_end * frame_bytes, pad)


class Recognizer:
    """Decodes one whole request at a time against the declared sentences."""

    def __init__(self, book: CommandBook, min_score: float) -> None:
        self.book = book
        self.min_score = min_score
        t0 = time.monotonic()
        try:
            import pocketsphinx  # noqa: F401  (the children import it; a missing one is said here)
        except ImportError as e:  # pragma: no cover - a dependency of hark
            raise RecognizerError(f"pocketsphinx is not installed ({e}); run scripts/install-deps") from e
        unknown = unknown_words(book)
        if unknown:
            raise RecognizerError(
                f"the recognizer's dictionary has no pronunciation for: {', '.join(unknown)}; "
                "spell numbers as words and use dictionary words in [commands] sentences and lists"
            )
        model = pocketsphinx_model_dir()
        # batch CMN: the whole (trimmed) request is decoded at once, so its own mean normalizes it (live CMN
        # starts from a generic estimate and loses the first words of short commands); compallsen: see above
        common: dict[str, Any] = {
            "hmm": str(model / "en-us"),
            "dict": str(model / "cmudict-en-us.dict"),
            "lm": None,
            "cmn": "batch",
            "compallsen": True,
            "loglevel": "FATAL",
        }
        grammar = jsgf(book)
        # both processes load at once
        self._grammar = DecoderProcess("command grammar", common, grammar)
        self._phones = DecoderProcess("phone loop", {**common, "allphone": str(model / "en-us-phone.lm.bin")})
        try:
            try:
                self._grammar.wait_ready()
            except DecoderError as e:
                raise RecognizerError(f"the command grammar was refused ({e}):\n{grammar}") from e
            try:
                self._phones.wait_ready()
            except DecoderError as e:
                raise RecognizerError(str(e)) from e
        except RecognizerError:
            self.close()
            raise
        self.load_s = time.monotonic() - t0
        log.info("local commands: %d intents, recognizer ready in %.2f s", len(book.by_name), self.load_s)

    def recognize(self, pcm16k: bytes) -> Recognition:
        """The command in this audio (16 kHz PCM16 mono), or a Recognition saying why there is none."""
        t0 = time.monotonic()
        if len(pcm16k) < 3200:  # under 100 ms: nothing to decode
            return Recognition(None, "", 0.0, 0.0, 0.0, "no audio")
        pcm16k = speech_span(pcm16k).audio(pcm16k)
        best, phones = self._decode_both(pcm16k)
        phone_score = float(phones["score"])
        words = [(w, first, last) for w, first, last in best["segs"] if w not in FILLERS]
        text = " ".join(w.split("(", 1)[0] for w, _, _ in words)
        command = self.book.match(text) if text else None
        if command is None:
            why = "not a whole declared sentence" if text else "no sentence fits"
            return Recognition(None, text, 0.0, 0.0, _ms(t0), why)
        # the sentence against a free phone loop on the same audio: speech that is not this sentence is
        # fitted far better by some other phone sequence than by the grammar's best path
        speech_frames = sum(last - first + 1 for _, first, last in words)
        score = (float(best["path"]) - phone_score) / max(1, speech_frames)
        confidence = 1.0 / (1.0 + math.exp(-(score - self.min_score)))
        if score < self.min_score:
            why = f"score {score:.2f} < commands.min_score {self.min_score:g}"
            return Recognition(None, text, score, confidence, _ms(t0), why)
        return Recognition(command, text, score, confidence, _ms(t0))

    def _decode_both(self, pcm16k: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
        """Both searches on the same audio, side by side. On a failure every submitted request is still read
        back (or its process restarted), so no stale answer is left for the next request."""
        error: DecoderError | None = None
        submitted: list[DecoderProcess] = []
        for decoder in (self._grammar, self._phones):
            try:
                decoder.submit(pcm16k)
                submitted.append(decoder)
            except DecoderError as e:
                error = error or e
        answers: dict[str, dict[str, Any]] = {}
        for decoder in submitted:
            try:
                answers[decoder.name] = decoder.result()
            except DecoderError as e:
                error = error or e
        if error is not None:
            raise RecognizerError(str(error)) from error
        return answers[self._grammar.name], answers[self._phones.name]

    @property
    def cpu_s(self) -> float:
        """CPU time the decoders' processes spent decoding so far (not in this process's CPU time)."""
        return self._grammar.cpu_s + self._phones.cpu_s

    @property
    def pids(self) -> tuple[int, int]:
        return self._grammar.pid, self._phones.pid

    def close(self) -> None:
        self._grammar.close()
        self._phones.close()


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000.0, 1)
