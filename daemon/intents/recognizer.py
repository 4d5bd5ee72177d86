"""On-device recognition of the declared commands: PocketSphinx constrained to a grammar of the templates.

Why PocketSphinx: its wheel carries the en-US acoustic model and dictionary (nothing is downloaded, on
x86-64 and aarch64 alike), it takes a JSGF grammar, and a grammar-constrained search of a whole request
costs a few % of one core (see scripts/bench_commands.py). Out-of-grammar speech is rejected twice: the
decoder's best path must be a whole declared sentence (hassil matches it back; a pruned, partial path is no
command), and the sentence must fit the audio nearly as well as a free phone loop does (a likelihood ratio
per speech frame, `commands.min_score`): a grammar forces every sound onto some declared sentence, and only
this comparison tells "turn on the kitchen radio" from "turn on the kitchen light". The lattice posterior
was measured and separates nothing (in-domain and out-of-domain both sit at 0.01–0.05 here).

The decoder is not thread-safe and decoding blocks: `Recognizer` is used from one worker thread only
(see daemon.intents.responder).
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon.intents.grammar import jsgf, vocabulary
from daemon.intents.spec import Command, CommandBook

log = logging.getLogger(__name__)

FILLERS = ("<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]")
UNDERFLOW = -700.0
"""ln of a word score that underflowed to 0 (as bad as a double can say)."""


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
        # batch CMN: the whole request is decoded at once, so its own mean normalizes it (live CMN starts
        # from a generic estimate and loses the first words of short commands)
        self._decoder = Decoder(
            hmm=str(model / "en-us"),
            dict=str(model / "cmudict-en-us.dict"),
            lm=None,
            cmn="batch",
            loglevel="FATAL",
        )
        grammar = jsgf(book)
        try:
            self._decoder.add_jsgf_string("hark", grammar.encode())
            self._decoder.activate_search("hark")
        except Exception as e:
            raise RecognizerError(f"the command grammar was refused ({e}):\n{grammar}") from e
        self._phones = Decoder(
            hmm=str(model / "en-us"),
            dict=str(model / "cmudict-en-us.dict"),
            lm=None,
            allphone=str(model / "en-us-phone.lm.bin"),
            cmn="batch",
            loglevel="FATAL",
        )
        self._phone_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hark-commands-phones")
        self.load_s = time.monotonic() - t0
        log.info("local commands: %d intents, recognizer ready in %.2f s", len(book.by_name), self.load_s)

    def recognize(self, pcm16k: bytes) -> Recognition:
        """The command in this audio (16 kHz PCM16 mono), or a Recognition saying why there is none."""
        t0 = time.monotonic()
        if len(pcm16k) < 3200:  # under 100 ms: nothing to decode
            return Recognition(None, "", 0.0, 0.0, 0.0, "no audio")
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
        ratio = _log_score(segs) - _log_score(phones.result())
        score = ratio / max(1, speech_frames)
        confidence = 1.0 / (1.0 + math.exp(-(score - self.min_score)))
        if score < self.min_score:
            why = f"score {score:.2f} < commands.min_score {self.min_score:g}"
            return Recognition(None, text, score, confidence, _ms(t0), why)
        return Recognition(command, text, score, confidence, _ms(t0))

    def close(self) -> None:
        self._phone_thread.shutdown(wait=False, cancel_futures=True)


def _decode(decoder: Any, pcm16k: bytes) -> list[Any]:
    decoder.start_utt()
    decoder.process_raw(pcm16k, full_utt=True)
    decoder.end_utt()
    return list(decoder.seg()) if decoder.hyp() is not None else []


def _log_score(segs: list[Any]) -> float:
    """Natural-log acoustic score of a path (pocketsphinx gives each word's as a probability density)."""
    return sum(math.log(s.ascore) if s.ascore > 0 else UNDERFLOW for s in segs)


def _ms(t0: float) -> float:
    return round((time.monotonic() - t0) * 1000.0, 1)
