"""Test speech for end-of-turn detection: finished requests, and the same requests with mid-sentence pauses.

Why cut and re-joined: a TTS fed "set a timer for" ends it like a finished sentence. Synthesizing the whole
sentence with a comma ("Set a timer for, ten minutes.") gives the pause the continuing intonation a person has
when they stop to think; the clip is split at its longest inner pauses and re-joined with pauses of known
length, so the true end of speech and every pause are known sample offsets (Clip.spans), not a VAD's guess.
"""

from __future__ import annotations

from pathlib import Path

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
