"""The last word so far: a request that stops on "the", "to" or "for" is not finished, whatever it sounds like.

Why words as well as Smart Turn: Smart Turn is an acoustic model. It hears intonation, and text-to-speech
(and many people) give a thinking pause a falling, finished-sounding tone: on the test speech it called two
in three mid-sentence pauses ("Turn on the, … kitchen lights.") finished. The words say what the tone does
not: a request that so far ends on an article, a preposition, a conjunction or a possessive cannot be over.
This is the signal LiveKit's turn detector takes from a transcript; here it comes from PocketSphinx with the
en-US acoustic model, dictionary and general language model that its wheel carries (nothing is downloaded).

Streaming, so the answer is ready when the pause is: every frame of the request is decoded as it arrives, in
this module's own thread (the decoder is not thread-safe). PocketSphinx holds the GIL while it decodes
(measured: daemon.intents.decoders), so each frame's decode can hold up the event loop for its own time:
2–6 ms per 30 ms frame at the real-time factor bench_turn.py prints (0.08–0.19), short beside the frame.
At a pause the partial hypothesis is read in well under a millisecond. The search is narrowed for speed
(no second pass, fewer active HMMs and words per frame): as good as the default search on the test speech
at half the CPU (see SEARCH; scripts/bench_turn.py prints the real-time factor).

Two signals:
- a closed list of words (`endpoint.turn_unfinished_words`) holds the request open: the recognizer's wrong
  guesses are mostly other words, so a mistake costs a complete request the ceiling's wait only when it
  happens to end on a listed word;
- optionally, the language model's P(end of sentence | the last two words heard), below
  `endpoint.turn_min_end_probability` (`unlikely_end`), raises the model's bar (or holds): the same general
  en-US trigram model the decoder searches with (nothing more is loaded), so "what is the weather we" (a
  misheard "in") or "start the washing" is an unlikely end, "ten minutes" or "me too" a likely one. It covers
  some of the recognizer's mistakes and pauses after a content word, which the list cannot. Holding outright
  on it also held complete requests whose last words it finds unusual (README), so by default it only raises
  the model's bar (`endpoint.turn_unlikely_end_threshold`); `turn_min_end_probability = 0` turns it off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from daemon.config.models import POCKETSPHINX_FILES, pocketsphinx_model_dir

log = logging.getLogger(__name__)
T = TypeVar("T")
BYTES_PER_S = 32_000
"""16 kHz PCM16 mono."""

SEARCH = {"fwdflat": False, "bestpath": False, "maxhmmpf": 10000, "maxwpf": 20, "pbeam": 1e-40, "wbeam": 1e-24}
"""The narrowed search (PocketSphinx's defaults: second passes on, maxhmmpf 30000, maxwpf -1, pbeam 1e-48,
wbeam 7e-29). Measured at every pause of the 120 requests of scripts/bench_turn.py: as many mid-sentence pauses
on an unfinished word (46 of 72) and as many complete requests wrongly so (1 of 60) as the default search, at
0.09 × real time instead of 0.18 on this x86; narrower still (maxhmmpf 5000) lost 7 of the 46."""


class WordsError(Exception):
    """The word recognizer cannot be used; the message names what is missing and the fix."""


@dataclass(frozen=True, slots=True)
class LastWord:
    """What the recognizer heard last, at a pause."""

    word: str
    """"" when nothing was recognized yet."""
    unfinished: bool
    """The word is one a request cannot end on (`endpoint.turn_unfinished_words`)."""
    lag_ms: float
    """Wall time from asking to the answer: decoding of queued audio that had not been decoded yet, plus the
    thread hop (~0 when the recognizer keeps up with the microphone)."""
    end_probability: float = 1.0
    """The language model's P(</s> | the last two words): how often a sentence ends there (1.0: nothing heard)."""
    unlikely_end: bool = False
    """`end_probability` is below `endpoint.turn_min_end_probability`: the policy holds the request (or asks
    the model for more: `endpoint.turn_unlikely_end_threshold`)."""


class Words:
    """A streaming PocketSphinx decoder over the request so far, owned by one worker thread.

    Called from the event loop only: `restart()` at each new request, `feed(pcm)` for each piece of audio,
    `last_word()` at a pause (a Future: it runs after every piece fed before it). The decoding itself happens
    in the thread, in order.
    """

    def __init__(self, unfinished: frozenset[str], min_end_probability: float = 0.0) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as e:  # pragma: no cover - a dependency of hark
            raise WordsError(f"pocketsphinx is not installed ({e}); run scripts/install-deps") from e
        model = pocketsphinx_model_dir()
        files = tuple(model / name for name in POCKETSPHINX_FILES)
        missing = [str(p) for p in files if not p.exists()]
        if missing:
            raise WordsError(f"the pocketsphinx wheel lacks {', '.join(missing)}: reinstall it (scripts/install-deps)")
        self.unfinished = unfinished
        self.min_end_probability = min_end_probability
        start = time.perf_counter()
        try:
            self._decoder: Any = Decoder(
                hmm=str(files[0]), dict=str(files[1]), lm=str(files[2]), loglevel="FATAL", **SEARCH
            )
        except Exception as e:  # pocketsphinx raises RuntimeError/ValueError on unreadable model files
            raise WordsError(f"pocketsphinx cannot load its en-US model ({type(e).__name__}: {e})") from e
        # The channel estimate (live cepstral mean normalization) carries from one request to the next, as it
        # adapts to the microphone and the room: measured on the test speech, starting every request from the
        # model's generic mean instead caught 44 of 72 mid-sentence pauses, not 51, and flagged 3 of 60 complete
        # requests, not 0. forget_channel() goes back to the generic mean (the benchmark does, per configuration).
        self._initial_cmn: str = self._decoder.get_cmn()
        self._lm: Any = self._decoder.get_lm()  # the decoder's own trigram model: no second copy
        self._logmath: Any = self._decoder.get_logmath()
        self.load_ms = (time.perf_counter() - start) * 1000
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="hark-turn-words")
        self._in_utterance = False
        self._request = 0  # bumped by restart(): audio queued for an earlier request is skipped, not decoded
        self._failed: Exception | None = None  # a decode error in this request: last_word() raises it
        self.decode_s = 0.0
        """Wall time spent decoding, in the thread (for the benchmark's real-time factor)."""
        self.audio_s = 0.0
        """Audio decoded, in seconds."""
        self._queued_s = 0.0  # audio handed to feed() (loop side) ...
        self._taken_s = 0.0  # ... and taken off the queue by the thread, decoded or skipped (thread side)

    # --- loop side: queue work for the thread ----------------------------------------------------------------

    def restart(self) -> Future[None]:
        """A new request: forget the previous one (and skip its audio still queued, if the thread lags)."""
        self._request += 1
        return self._submit(self._restart)

    def forget_channel(self) -> Future[None]:
        """Back to the model's generic channel estimate, as just after loading (for comparable measurements)."""
        return self._submit(self._decoder.set_cmn, self._initial_cmn)

    def feed(self, pcm: bytes) -> Future[None]:
        """Decode this audio (16 kHz PCM16 mono), after everything fed before it."""
        self._queued_s += len(pcm) / BYTES_PER_S
        return self._submit(self._feed, pcm, self._request)

    @property
    def backlog_s(self) -> float:
        """Audio fed but not yet taken up by the thread, in seconds: ~0 while it keeps up with a microphone;
        a WAV fed at full speed queues its whole length."""
        return max(0.0, self._queued_s - self._taken_s)

    def last_word(self) -> Future[LastWord]:
        """The last recognized word of everything fed so far."""
        return self._submit(self._last_word, time.perf_counter())

    def _submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue work for the thread; once it is shut down, a Future that fails (never an exception here: the
        caller is the audio path)."""
        try:
            return self._thread.submit(fn, *args)
        except RuntimeError as e:  # "cannot schedule new futures after shutdown"
            failed: Future[T] = Future()
            failed.set_exception(WordsError(f"the word recognizer is closed ({e})"))
            return failed

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)

    # --- thread side ---------------------------------------------------------------------------------------------

    def _restart(self) -> None:
        self._failed = None
        try:
            if self._in_utterance:
                self._in_utterance = False
                self._decoder.end_utt()
            self._decoder.start_utt()
            self._in_utterance = True
        except Exception as e:  # pocketsphinx's RuntimeError: kept for last_word() to report
            self._failed = e

    def _feed(self, pcm: bytes, request: int) -> None:
        self._taken_s += len(pcm) / BYTES_PER_S
        if self._failed is not None or request != self._request:
            return
        if not self._in_utterance:
            self._restart()
        start = time.perf_counter()
        try:
            self._decoder.process_raw(pcm)
        except Exception as e:  # pocketsphinx's RuntimeError: kept for last_word() to report
            self._failed = e
        self.decode_s += time.perf_counter() - start
        self.audio_s += len(pcm) / BYTES_PER_S

    def _last_word(self, asked: float) -> LastWord:
        if self._failed is not None:
            raise WordsError(f"pocketsphinx failed on this request ({type(self._failed).__name__}: {self._failed})")
        hyp = self._decoder.hyp() if self._in_utterance else None
        words = hyp.hypstr.split() if hyp is not None else []
        word = words[-1] if words else ""
        end = self.end_probability(words)
        lag_ms = (time.perf_counter() - asked) * 1000
        return LastWord(word, word in self.unfinished, lag_ms, end, end < self.min_end_probability)

    def end_probability(self, words: list[str]) -> float:
        """P(</s> | the last two of `words`) by the language model (1.0 for no words). Thread side (the model
        is the decoder's); the benchmark and tests call it on an idle recognizer."""
        if not words:
            return 1.0
        return float(self._logmath.exp(self._lm.prob(["</s>", *reversed(words[-2:])])))


def load_words(unfinished: list[str], min_end_probability: float = 0.0) -> Words | None:
    """The recognizer, loaded and run once (~0.3 s, +~95 MB RSS: the language model), or None with ONE
    warning when it cannot be used: the turn model then decides alone. Blocking: call it in a worker thread."""
    try:
        words = Words(frozenset(unfinished), min_end_probability)
        words.restart().result()
        words.feed(bytes(3200)).result()
        words.last_word().result()
    except WordsError as e:
        log.warning("%s; the turn model decides without the last word", e)
        return None
    return words
