"""The local Piper voice: sentence-by-sentence synthesis off the event loop.

Why sentences: the first sentence should be playing while the rest is still being synthesized, so a long
answer starts as fast as a short one. Why one worker thread: Piper is CPU work (onnxruntime releases the GIL),
one sentence at a time keeps the order and never lets synthesis compete with itself for the Pi's cores.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import functools
import logging
import re
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from daemon.audio.frames import AudioChunk
from daemon.config.models import FETCH_HINT, ModelError, piper_voice_path
from daemon.config.settings import FallbackSettings

if TYPE_CHECKING:
    from piper import PiperVoice

    from daemon.answer.piper_pieces import PiperPieces

log = logging.getLogger(__name__)

MAX_SENTENCE_CHARS = 200
"""Longest piece handed to Piper at once: bounds both time to first audio and how long a cancel waits."""

_ABBREVIATIONS = frozenset(
    ("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "vs", "etc", "e.g", "i.e", "cf", "approx")
    + (
        "a.m",
        "p.m",
        "no",
        "nos",
        "fig",
        "inc",
        "ltd",
        "co",
        "corp",
        "dept",
        "est",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
    )
    + ("jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon", "tue", "wed", "thu", "fri", "sat", "sun")
)
_TERMINATORS = ".!?…"
_CLOSERS = "\"')]}»”’"
_SOFT_BREAKS = re.compile(r"[,;:–—]\s")
_LOOKAHEAD = 2
"""Sentences submitted but not yet played out: the one being yielded and the next, synthesizing meanwhile."""


_Pending: TypeAlias = "_Rendering | BaseException | None"
_END = None


class VoiceError(Exception):
    """The local voice cannot speak: the message says which file and how to fix it."""


class SentenceSplitter:
    """Cuts streamed text into sentences as soon as each one is certainly complete.

    A terminator only counts once the character after it is known (whitespace), so "3." + "5" and "Dr." +
    " Smith" arriving as separate deltas are handled like the whole text. Text that runs on without an end is
    cut at `max_chars`, preferring a comma or a space, so Piper never gets an unbounded piece.
    """

    def __init__(self, max_chars: int = MAX_SENTENCE_CHARS) -> None:
        if max_chars < 20:
            raise ValueError(f"max_chars={max_chars}: expected at least 20 characters")
        self.max_chars = max_chars
        self._buf = ""

    def feed(self, delta: str) -> list[str]:
        """Add text; return the sentences it completed (possibly none)."""
        if not isinstance(delta, str):
            raise TypeError(f"SentenceSplitter.feed expects str, got {type(delta).__name__}")
        self._buf = (self._buf + delta).lstrip()
        out: list[str] = []
        while True:
            cut = self._find_end(self._buf[: self.max_chars + 1])  # +1: the character after a last "."
            if cut is None and len(self._buf) > self.max_chars:
                cut = self._soft_cut(self._buf)
            if cut is None:
                return out
            piece, self._buf = self._buf[:cut].strip(), self._buf[cut:].lstrip()
            if piece:
                out.append(piece)

    def clause(self, min_words: int) -> str | None:
        """Cut off the text's first clause, when it is complete (a comma, semicolon, colon or dash and a space
        after it) and has at least `min_words` words; else None. For the first sentence of an answer: its
        voice can start while the model is still writing the rest of the sentence."""
        for match in _SOFT_BREAKS.finditer(self._buf[: self.max_chars]):
            piece = self._buf[: match.end()].strip()
            if len(piece.split()) >= min_words:
                self._buf = self._buf[match.end() :].lstrip()
                return piece
        return None

    def flush(self) -> str:
        """The rest of the text (end of stream), stripped; resets the splitter."""
        rest, self._buf = self._buf.strip(), ""
        return rest

    def split(self, text: str) -> list[str]:
        """All sentences of a complete text."""
        sentences = self.feed(text)
        rest = self.flush()
        return [*sentences, rest] if rest else sentences

    def _find_end(self, buf: str) -> int | None:
        for i, ch in enumerate(buf):
            if ch == "\n":
                if buf[:i].strip():
                    return i + 1
                continue
            if ch not in _TERMINATORS:
                continue
            end = i + 1
            while end < len(buf) and buf[end] in _CLOSERS:
                end += 1
            if end >= len(buf):
                return None  # the next character decides: wait for more text
            if buf[end].isspace() and not self._is_abbreviation(buf, i):
                return end
        return None

    @staticmethod
    def _is_abbreviation(buf: str, dot: int) -> bool:
        if buf[dot] != ".":
            return False
        start = dot
        while start > 0 and not buf[start - 1].isspace():
            start -= 1
        word = buf[start:dot].lstrip("\"'([").lower()
        if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            return True  # "Dr.", "e.g.", initials like "J."
        line_start = buf.rfind("\n", 0, start) + 1
        return word.isdigit() and not buf[line_start:start].strip()  # "1. " list marker

    def _soft_cut(self, buf: str) -> int:
        window = buf[: self.max_chars]
        soft = [m.end() for m in _SOFT_BREAKS.finditer(window)]
        if soft and soft[-1] > self.max_chars // 3:
            return soft[-1]
        space = window.rfind(" ")
        return space + 1 if space > self.max_chars // 3 else self.max_chars


class LocalVoice:
    """Piper behind an async interface: `await load()`, then `async for chunk in speak(text)`."""

    def __init__(self, settings: FallbackSettings, models_dir: Path) -> None:
        self.settings = settings
        self.models_dir = models_dir
        self.path: Path | None = None
        """The voice file, once loaded."""
        self._voice: PiperVoice | None = None
        self._load_lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hark-piper")
        self.sentences_synthesized = 0
        """Sentences finished by the worker (counted on the loop): for metrics and ordering checks."""
        self.load_seconds: float | None = None
        self._closed = False
        self._pieces: PiperPieces | None = None
        """The voice cut for rendering in pieces (daemon.answer.piper_pieces), once ready."""
        self._cutting: asyncio.Future[PiperPieces | None] | None = None
        self._cache_dir: Path | None = None

    @property
    def loaded(self) -> bool:
        return self._voice is not None

    @property
    def piper(self) -> PiperVoice | None:
        """The loaded Piper voice (its phonemizer and config), None before load() and after close()."""
        return self._voice

    @property
    def cache_dir(self) -> Path | None:
        """Where the voice's cut is kept (enable_pieces), None when pieces were never asked for."""
        return self._cache_dir

    @property
    def pieces(self) -> PiperPieces | None:
        """The voice cut for rendering in pieces, once ready (None: whole sentences)."""
        return self._pieces

    async def start(self) -> None:
        """At daemon start: load now when fallback.load = "start" (the default), else on first use.

        Why "start" by default: loading costs ~1-2.5 s, and the voice is needed exactly when the cloud
        just failed; ~140 MB of RSS is cheap on a Pi 4/5. "lazy" suits 512 MB boards that rarely fall back.
        """
        if self.settings.load == "start":
            await self.load()

    async def load(self) -> None:
        """Load the voice once (in the worker: ~1 s of file reading and ONNX setup)."""
        async with self._load_lock:
            if self._voice is not None:
                return
            if self._closed:
                raise VoiceError("this LocalVoice was closed (daemon shutting down): it cannot speak again")
            started = time.monotonic()
            loop = asyncio.get_running_loop()
            try:
                path, voice = await loop.run_in_executor(
                    self._executor, _load_piper, self.settings.voice, self.models_dir
                )
                self.path, self._voice = path, voice
            except ModelError as e:
                raise VoiceError(str(e)) from e
            self.load_seconds = time.monotonic() - started
            log.info("Piper voice %s loaded in %.2f s", self.path, self.load_seconds)
            if self._cache_dir is not None:
                self._start_cut()

    def enable_pieces(self, cache_dir: Path) -> None:
        """Someone will ask for `in_pieces` (the cascade's answers): cut the voice once it is loaded, into
        `cache_dir` (kept for the next start). The first time this costs a few seconds of CPU in a child
        process; until it is done (or when the voice cannot be cut) whole sentences are spoken."""
        self._cache_dir = cache_dir
        if self._voice is not None and self._cutting is None:
            self._start_cut()

    def _start_cut(self) -> None:
        assert self._voice is not None and self.path is not None and self._cache_dir is not None
        loop = asyncio.get_running_loop()
        self._cutting = loop.run_in_executor(None, self._open_pieces, self.path, self._cache_dir)
        self._cutting.add_done_callback(self._adopt_pieces)

    def _open_pieces(self, path: Path, cache_dir: Path) -> PiperPieces | None:
        """Thread: the voice's pieces (cut once, then from the cache), or None with the reason logged."""
        from daemon.answer.piper_pieces import PiecesUnavailable, PiperPieces

        voice = self._voice
        if voice is None:  # closed meanwhile
            return None
        try:
            return PiperPieces.open(voice, path, cache_dir, _pieces_options)
        except PiecesUnavailable as e:
            log.info("Piper voice %s speaks whole sentences: %s", path, e)
        except Exception as e:  # onnxruntime raises many types for a file it cannot read; whole sentences work
            log.warning("Piper voice %s could not be cut into pieces (%s: %s)", path, type(e).__name__, e)
        return None

    def _adopt_pieces(self, fut: asyncio.Future[PiperPieces | None]) -> None:
        """On the loop: from now on every sentence is rendered by the pieces (the same audio as the whole voice
        when not in pieces), so the whole voice's session is let go (~90 MB; a sentence being rendered keeps
        it until it is done)."""
        pieces = None if fut.cancelled() or fut.exception() is not None else fut.result()
        if pieces is None or self._voice is None:
            return
        self._pieces = pieces
        self._voice = dataclasses.replace(self._voice, session=pieces.front)  # its phonemizer and config
        _give_back_memory()

    async def pieces_ready(self) -> bool:
        """Wait until the voice is loaded and its cut is done; True when it renders in pieces."""
        await self.load()
        if self._cutting is not None:
            await asyncio.shield(self._cutting)
        return self._pieces is not None

    async def speak(self, text: str, *, in_pieces: bool = False) -> AsyncIterator[AudioChunk]:
        """Speak a complete text; the first sentence's audio comes out while later ones are synthesized.
        `in_pieces`: each sentence's first audio as soon as its first window is rendered, when the voice
        could be cut (daemon.answer.piper_pieces); else one chunk per sentence."""
        if not isinstance(text, str):
            raise TypeError(f"LocalVoice.speak expects str, got {type(text).__name__}")
        async for chunk in self.speak_stream(_once(text), in_pieces=in_pieces):
            yield chunk

    async def speak_stream(self, deltas: AsyncIterable[str], *, in_pieces: bool = False) -> AsyncIterator[AudioChunk]:
        """Speak text that arrives in pieces (text-mode answers): each sentence as soon as it is complete.

        Closing or cancelling the consumer stops synthesis: queued sentences are dropped and the worker
        finishes at most the sentence it is on.
        """
        await self.load()
        stop = threading.Event()
        ahead = asyncio.Semaphore(_LOOKAHEAD)
        pending: asyncio.Queue[_Pending] = asyncio.Queue()
        producer = asyncio.create_task(self._produce(deltas, stop, ahead, pending, in_pieces), name="hark-piper-feed")
        try:
            while (item := await pending.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                while (chunk := await item.chunks.get()) is not _END:
                    if isinstance(chunk, BaseException):
                        raise chunk
                    yield chunk
                ahead.release()
        finally:
            stop.set()
            producer.cancel()
            while not pending.empty():
                left = pending.get_nowait()
                if isinstance(left, _Rendering):
                    left.future.cancel()

    async def _produce(
        self,
        deltas: AsyncIterable[str],
        stop: threading.Event,
        ahead: asyncio.Semaphore,
        pending: asyncio.Queue[_Pending],
        in_pieces: bool,
    ) -> None:
        """Submit sentences to the worker in order, at most `_LOOKAHEAD` not yet played out."""
        splitter = SentenceSplitter()
        try:
            async for delta in deltas:
                for sentence in splitter.feed(delta):
                    await ahead.acquire()
                    pending.put_nowait(self._submit(sentence, stop, in_pieces))
            if rest := splitter.flush():
                await ahead.acquire()
                pending.put_nowait(self._submit(rest, stop, in_pieces))
        except Exception as e:  # the text source failed: hand the error to the consumer
            pending.put_nowait(e)
            return
        pending.put_nowait(None)

    def _submit(self, sentence: str, stop: threading.Event, in_pieces: bool) -> _Rendering:
        """The worker renders `sentence`; its chunks reach the loop one by one, as each is ready."""
        assert self._voice is not None
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[AudioChunk | BaseException | None] = asyncio.Queue()

        def emit(chunk: AudioChunk) -> None:  # worker thread
            loop.call_soon_threadsafe(chunks.put_nowait, chunk)

        volume, pieces = self.settings.volume, self._pieces
        work = functools.partial(
            _synthesize, self._voice, sentence, pieces=pieces, in_pieces=in_pieces, volume=volume, stop=stop, emit=emit
        )
        fut = loop.run_in_executor(self._executor, work)

        def done(fut: asyncio.Future[int]) -> None:  # on the loop, after every chunk the worker emitted
            if fut.cancelled():
                chunks.put_nowait(_END)
            elif (error := fut.exception()) is not None:
                chunks.put_nowait(error)
            else:
                self.sentences_synthesized += fut.result() > 0
                chunks.put_nowait(_END)

        fut.add_done_callback(done)
        return _Rendering(fut, chunks)

    async def close(self) -> None:
        """Let the worker finish its current sentence and stop; the voice cannot speak afterwards.
        A load still in progress (it runs right after start) is not waited for: it cannot be interrupted."""
        self._closed = True
        if self._load_lock.locked() and self._voice is None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        else:
            await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
        self._voice = None


async def say_or_log(voice: LocalVoice | None, text: str) -> AsyncIterator[AudioChunk]:
    """Speak a short sentence the daemon decided on (a fallback apology, a command's confirmation): without a
    voice, or when synthesis fails, log why and yield nothing — the turn still ends normally."""
    if voice is None:
        log.error("cannot say %r: no local voice (run scripts/fetch-models)", text)
        return
    try:
        async for chunk in voice.speak(text):
            yield chunk
    except VoiceError as e:
        log.error("local voice failed: %s", e)


async def _once(text: str) -> AsyncIterator[str]:
    yield text


@dataclass(frozen=True)
class _Rendering:
    """One sentence in the worker: its chunks arrive in `chunks`, then _END (or the error)."""

    future: asyncio.Future[int]
    chunks: asyncio.Queue[AudioChunk | BaseException | None]


def _give_back_memory() -> None:
    """Return freed heap to the system (glibc keeps it otherwise: the whole voice's session, ~90 MB)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the memory is reused by the process instead
        pass


def _pieces_options() -> Any:
    """The pieces' onnxruntime options: one thread. Measured in the daemon here (2 cores, the wake word and
    the event loop running beside it), first token → first sample with the pieces took 62–85 ms with one
    thread and ~200 ms with onnxruntime's default (a thread per core, spinning), at loads 1–2. The whole voice
    keeps the default (bench_tts at load ~1: first audio 89 ms with it, 136 ms with one thread)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return options


def _load_piper(voice: str, models_dir: Path) -> tuple[Path, PiperVoice]:
    """Worker thread: find the files (daemon.config.models says what to do when they are missing), then load."""
    path = piper_voice_path(voice, models_dir)
    from piper import PiperVoice  # imported here: pulls in onnxruntime, only when a voice is needed

    try:
        return path, PiperVoice.load(path)
    except Exception as e:  # onnxruntime / json raise many types for a broken file
        raise VoiceError(f"cannot load Piper voice {path}: {e}; {FETCH_HINT} again") from e


def _synthesize(
    voice: PiperVoice,
    sentence: str,
    *,
    pieces: PiperPieces | None,
    in_pieces: bool,
    volume: float,
    stop: threading.Event,
    emit: Callable[[AudioChunk], None],
) -> int:
    """Worker thread: one sentence → chunks handed to `emit` as each is ready (Piper may split the sentence
    further; with `in_pieces` each part comes window by window); skipped once `stop` is set. Returns the
    count. `pieces`: the voice's pieces once they are ready (they then render every sentence)."""
    from piper import SynthesisConfig

    count = 0
    if stop.is_set():
        return count
    try:
        if pieces is not None:
            chunks: Iterable[AudioChunk] = pieces.render(voice, sentence, volume, stop, in_pieces=in_pieces)
        else:
            chunks = (
                AudioChunk(c.audio_int16_bytes, c.sample_rate, c.sample_channels)
                for c in voice.synthesize(sentence, SynthesisConfig(volume=volume))
            )
        for chunk in chunks:
            if stop.is_set():
                break
            emit(chunk)
            count += 1
    except Exception as e:  # espeak/onnxruntime errors: name the text so the log shows what failed
        raise VoiceError(f"Piper could not synthesize {sentence[:60]!r}: {e}") from e
    return count
