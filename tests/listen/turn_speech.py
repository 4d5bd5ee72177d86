"""Test speech for end-of-turn detection: finished requests, and the same requests with mid-sentence pauses.

Why cut and re-joined: a TTS fed "set a timer for" ends it like a finished sentence. Two ways to make the
pause, both kept (they bound what a person does):

- `hesitant`, with commas: the whole sentence synthesized with a comma ("Set a timer for, ten minutes."),
  split at its longest inner pauses. The voices give the word before a comma a phrase-final boundary tone and
  lengthening: the prosody of a finished phrase, more final-sounding than a person searching for a word.
- `fluent_hesitant`, without: the sentence synthesized fluently ("Set a timer for ten minutes."), the word
  boundaries found by PocketSphinx forced alignment, and the pause inserted after the same word. The word
  keeps the level, continuing tone of running speech, the way a person who stops mid-sentence usually does;
  what it lacks is the slowing-down before a real hesitation.

Either way the pieces are re-joined with pauses of known length, so the true end of speech and every pause are
known sample offsets (Clip.spans), not a VAD's guess.
"""

from __future__ import annotations

import ctypes
import functools
import re
from pathlib import Path
from typing import Any

import numpy as np

from daemon.audio.frames import INPUT_RATE_HZ
from tests.speech import AUDIBLE, Clip, Speech, read_wav, speech_bounds

MIN_PAUSE_MS = 60
"""An inner quiet run at least this long counts as a pause the sentence can be split at."""


def split_at_pauses(pcm: np.ndarray, pauses: int) -> list[np.ndarray]:
    """The speech split at its `pauses` longest inner pauses (the commas), in order."""
    first, last = speech_bounds(pcm)
    pcm = pcm[first:last]
    quiet = np.abs(pcm.astype(np.int32)) < np.abs(pcm.astype(np.int32)).max() * AUDIBLE
    edges = np.flatnonzero(np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]])))
    starts, ends = edges[0::2], edges[1::2]
    longest = sorted(np.argsort(ends - starts)[::-1][:pauses])
    if len(longest) < pauses or min(ends[i] - starts[i] for i in longest) < MIN_PAUSE_MS * INPUT_RATE_HZ // 1000:
        raise ValueError(f"expected {pauses} inner pause(s) of at least {MIN_PAUSE_MS} ms in the speech")
    pieces, at = [], 0
    for i in longest:
        pieces.append(pcm[at : starts[i]])
        at = ends[i]
    pieces.append(pcm[at:])
    return pieces


def hesitant(path: Path, pauses_s: list[float], before_s: float = 0.5, after_s: float = 2.0) -> Clip:
    """The sentence in `path` (synthesized with commas) re-joined with these mid-sentence pauses."""
    pieces = split_at_pauses(read_wav(path)[0], len(pauses_s))
    return Speech.concat(pieces, [before_s, *pauses_s, after_s])


def complete(path: Path, before_s: float = 0.5, after_s: float = 2.0) -> Clip:
    return Speech.concat([path], [before_s, after_s])


FADE_MS = 10
"""A cut inside running speech is faded out and in over this long: a hard cut clicks, a person's voice decays."""
SEARCH_MS = 20
"""The cut is placed at the quietest 5 ms within this distance of the word boundary."""


def spoken_words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", "", text.lower()).split()


def aligned_word_ends(pcm: np.ndarray, text: str) -> list[int]:
    """The sample where each word of `text` ends in `pcm`, by PocketSphinx forced alignment (the en-US acoustic
    model and dictionary of its wheel); a silence the aligner finds after a word is split in two. Reliable on
    the Piper voice; on espeak-ng it often loses words, hence `espeak_word_starts`."""
    from pocketsphinx import Decoder

    from daemon.config.models import pocketsphinx_model_dir

    model = pocketsphinx_model_dir()
    decoder = Decoder(hmm=str(model / "en-us"), dict=str(model / "cmudict-en-us.dict"), loglevel="FATAL")
    spoken = spoken_words(text)
    decoder.set_align_text(" ".join(spoken))
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    per_frame = INPUT_RATE_HZ // 100
    segments = [(re.sub(r"\(\d+\)$", "", s.word), s.start_frame, s.end_frame) for s in decoder.seg() or []]
    words = [i for i, (w, _, _) in enumerate(segments) if not w.startswith("<") and w != "</s>"]
    if [segments[i][0] for i in words] != spoken:
        raise ValueError(f"forced alignment of {text!r} gave {[s[0] for s in segments]}, not every word")
    ends = []
    for i in words:
        end = (segments[i][2] + 1) * per_frame
        if i + 1 < len(segments) and segments[i + 1][0] == "<sil>":
            end = (end + (segments[i + 1][2] + 1) * per_frame) // 2
        ends.append(end)
    return ends


class _EspeakEvent(ctypes.Structure):
    """espeak_EVENT (speak_lib.h)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


@functools.cache
def _espeak() -> tuple[Any, int]:
    """libespeak-ng, initialized once per process (initializing it again after espeak_Terminate hangs)."""
    lib = ctypes.CDLL("libespeak-ng.so.1")
    return lib, lib.espeak_Initialize(2, 0, None, 0)  # AUDIO_OUTPUT_SYNCHRONOUS: the sample rate


def espeak_word_starts(text: str, voice: str = "en-us", speed: int = 160, pitch: int = 50) -> dict[int, int]:
    """Where espeak-ng starts each word of `text` that it reports on its own: {character offset in `text`: 16 kHz
    sample}, from its word events (libespeak-ng, the library behind the espeak-ng command: same voice, same
    settings, the very samples of `espeak_wav`). It reports an unstressed word joined to its neighbour ("on the"
    is one word event) as part of it, so such a word has no entry."""
    lib, rate = _espeak()
    starts: dict[int, int] = {}

    def heard(wav: Any, samples: int, events: Any) -> int:
        i = 0
        while events[i].type != 0:  # espeakEVENT_LIST_TERMINATED
            if events[i].type == 1:  # espeakEVENT_WORD; text_position counts from 1
                starts[events[i].text_position - 1] = events[i].sample * INPUT_RATE_HZ // rate
            i += 1
        return 0

    callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(_EspeakEvent))(heard)
    lib.espeak_SetSynthCallback(callback)
    lib.espeak_SetVoiceByName(voice.encode())
    lib.espeak_SetParameter(1, speed, 0)  # espeakRATE
    lib.espeak_SetParameter(3, pitch, 0)  # espeakPITCH
    raw = text.encode()
    lib.espeak_Synth(raw, len(raw) + 1, 0, 1, 0, 0x1000, None, None)  # POS_CHARACTER, espeakENDPAUSE
    lib.espeak_Synchronize()
    return starts


def word_boundaries(engine: str, pcm: np.ndarray, text: str, after_words: list[int], **voice: Any) -> list[int]:
    """The samples of `pcm` (`text` spoken fluently by "piper" or "espeak") where the words at `after_words`
    end: espeak-ng's own word events where it reports the next word on its own, else forced alignment."""
    offsets = [m.start() for m in re.finditer(r"\S+", text)]
    events = espeak_word_starts(text, **voice) if engine == "espeak" else {}
    aligned: list[int] | None = None
    out = []
    for i in after_words:
        if offsets[i + 1] in events:
            out.append(events[offsets[i + 1]])
            continue
        aligned = aligned or aligned_word_ends(pcm, text)
        out.append(aligned[i])
    return out


def fluent_hesitant(
    pcm: np.ndarray, boundaries: list[int], pauses_s: list[float], before_s: float = 0.5, after_s: float = 2.0
) -> Clip:
    """Fluent speech (synthesized without commas) with these pauses inserted at these word boundaries
    (samples), each moved to the quietest 5 ms within SEARCH_MS and faded out and in."""
    if len(boundaries) != len(pauses_s):
        raise ValueError(f"fluent_hesitant: {len(boundaries)} cut points need as many pauses, got {pauses_s}")
    search, fade = SEARCH_MS * INPUT_RATE_HZ // 1000, FADE_MS * INPUT_RATE_HZ // 1000
    energy = np.convolve(pcm.astype(np.float64) ** 2, np.ones(5 * INPUT_RATE_HZ // 1000), "same")
    cuts = []
    for at in boundaries:
        lo, hi = max(fade, at - search), min(len(pcm) - fade, at + search)
        cuts.append(lo + int(np.argmin(energy[lo:hi])))
    ramp = np.linspace(0.0, 1.0, fade)
    pieces, at = [], 0
    for cut in [*cuts, len(pcm)]:
        piece = pcm[at:cut].astype(np.float64)
        if at > 0:
            piece[:fade] *= ramp
        if cut < len(pcm):
            piece[-fade:] *= ramp[::-1]
        pieces.append(np.round(piece).astype(np.int16))
        at = cut
    return Speech.concat(pieces, [before_s, *pauses_s, after_s])
