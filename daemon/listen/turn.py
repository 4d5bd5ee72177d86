"""Where a request ends: webrtcvad finds the pauses, Smart Turn decides whether a pause ends the sentence.

`TurnDetector` is what the assistant feeds while it listens. It wraps the `Endpointer` (webrtcvad: speech
started, silence so far, no speech, max length) and, with a turn model, the `TurnPolicy`: after
`turn_min_silence_ms` of silence the model hears the request so far; "finished" ends the request at once,
"unfinished" keeps listening and asks again as the silence grows, and `turn_max_silence_ms` of silence ends
it whatever the model says. With the words (`turn_words`, daemon.listen.words) a streaming recognizer hears
the request too, and a "finished" from the model does not end a request whose last word so far cannot end
one ("turn on the"). Without a model (turn_model = "none", or the file missing or corrupt) it is the plain
endpointer: `end_silence_ms` of silence ends the request, exactly as before.

Why the judgement is awaited and not polled: the model runs in the assistant's single inference worker (never
on the loop); `process()` awaits its answer while the capture source buffers the frames that arrive meanwhile
(4 s of room; a judgement takes ~50–70 ms here). So the end is decided the moment the answer is ready, not one
frame later, and the decision depends only on the audio, not on how fast frames arrive: a WAV fed at full
speed ends at exactly the sample a live microphone would, which makes tests and benchmarks reproducible. The
last word is asked for just before, from the recognizer's own thread, after every frame fed before it (so
it, too, depends only on the audio). A judgement that fails or takes longer than JUDGEMENT_TIMEOUT_S hands
this request back to the silence rule; a word recognizer that fails or lags that long is left out of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path
from typing import Literal

import numpy as np

from daemon.audio.frames import INPUT_RATE_HZ, SAMPLE_WIDTH, AudioFrame
from daemon.config.settings import EndpointSettings
from daemon.listen.endpoint import VAD_FRAME_SAMPLES, Endpointer, EndpointEvent, VadState
from daemon.listen.smart_turn import (
    WINDOW_SAMPLES,
    SmartTurn,
    TurnAsk,
    TurnEnd,
    TurnModelError,
    TurnPolicy,
    TurnSettings,
)
from daemon.listen.words import LastWord, Words, load_words
from daemon.observe.events import Error, NoSpeech, SpeechEnded, TurnJudged

log = logging.getLogger(__name__)

JUDGEMENT_TIMEOUT_S = 1.0
"""A judgement slower than this (a stalled worker, a Pi under load) is given up: the silence rule decides."""
_KEEP_BYTES = WINDOW_SAMPLES * SAMPLE_WIDTH
"""The model hears the last 8 s; older audio of a long request is dropped."""

TurnEvent = EndpointEvent | TurnJudged | Error


def turn_settings(settings: EndpointSettings) -> TurnSettings:
    """`[endpoint]` → the policy's settings (same names, same units)."""
    return TurnSettings(
        turn_min_silence_ms=settings.turn_min_silence_ms,
        turn_recheck_ms=settings.turn_recheck_ms,
        turn_max_silence_ms=settings.turn_max_silence_ms,
        turn_threshold=settings.turn_threshold,
        turn_unlikely_end_threshold=settings.turn_unlikely_end_threshold,
    )


def load_turn_model(settings: EndpointSettings, path: Path) -> SmartTurn | None:
    """The turn model, loaded and run once (onnxruntime allocates on its first run, and a file that loads but
    cannot run shows here, not in the first request). None, with ONE warning, when it cannot be used: the
    daemon then ends requests by silence alone. Blocking (~0.3 s): call it in a worker thread."""
    if settings.turn_model == "none":
        return None
    try:
        model = SmartTurn(path)
        model.judge(np.zeros(INPUT_RATE_HZ, dtype=np.int16))
    except TurnModelError as e:
        log.warning("%s; requests end after %d ms of silence instead", e, settings.end_silence_ms)
        return None
    except Exception as e:  # onnxruntime's own error types on a model that loads but cannot run
        log.warning(
            "turn model %s fails to run (%s: %s); requests end after %d ms of silence instead: delete it and run "
            "scripts/fetch-models",
            path,
            type(e).__name__,
            e,
            settings.end_silence_ms,
        )
        return None
    return model


def load_turn_words(settings: EndpointSettings) -> Words | None:
    """The word recognizer when the settings ask for it (turn_words = "pocketsphinx" with a turn model), else
    None; None with one warning when it cannot be loaded. Blocking (~0.3 s): call it in a worker thread."""
    if settings.turn_model == "none" or settings.turn_words == "none":
        return None
    return load_words(settings.turn_unfinished_words, settings.turn_min_end_probability)


class TurnDetector:
    """`start(sample)` at the wake point, then `await process(frame, executor)` for every frame until a
    `SpeechEnded` or `NoSpeech` comes back (with `TurnJudged` events for the model's answers on the way)."""

    def __init__(self, settings: EndpointSettings, model: SmartTurn | None, words: Words | None = None) -> None:
        self.settings = settings
        self.model = model
        self.words = words if model is not None else None
        self._next_words: Words | None = None  # loaded after start-up: heard from the next request on
        # With a model, webrtcvad's own end of silence is the ceiling; the model ends the request earlier.
        self._endpointer = Endpointer(settings, end_silence_ms=settings.turn_max_silence_ms if model else None)
        self._turn = turn_settings(settings)
        self._policy = TurnPolicy(self._turn, INPUT_RATE_HZ)
        frames = max(1, round(settings.end_silence_ms * INPUT_RATE_HZ / 1000 / VAD_FRAME_SAMPLES))
        self._fallback_samples = frames * VAD_FRAME_SAMPLES  # end_silence_ms, rounded as the endpointer does
        self._audio = bytearray()  # the request so far (the last 8 s of it)
        self._model_off = False  # a judgement failed during this request: the silence rule decides
        self._words_off = False  # the word recognizer failed or lagged during this request: the model alone
        self._epoch = 0  # bumped by start()/stop(): an answer awaited across them is dropped

    @property
    def state(self) -> VadState:
        return self._endpointer.state

    @property
    def armed(self) -> bool:
        return self._endpointer.armed

    def start(self, sample: int, start_timeout_s: float | None = None) -> None:
        """Arm at input sample `sample`, as `Endpointer.start`; a new request starts from scratch."""
        if self._next_words is not None:
            self.words, self._next_words = self._next_words, None
        self._endpointer.start(sample, start_timeout_s)
        self._reset()

    def use_words(self, words: Words) -> None:
        """The word recognizer, loaded after start-up: heard from the next request on (one already under way
        is decided without it). Without a turn model there is nothing for it to overrule: it is closed."""
        if self.model is None:
            words.close()
            return
        self._next_words = words

    def stop(self) -> None:
        """Disarm without an event (barge-in, mute, shutdown); an answer still in flight is dropped."""
        self._endpointer.stop()
        self._reset()

    async def aclose(self) -> None:
        """Stop the word recognizer's thread (at shutdown)."""
        for words in (self.words, self._next_words):
            if words is not None:
                words.close()

    def _reset(self) -> None:
        self._epoch += 1
        self._policy = TurnPolicy(self._turn, INPUT_RATE_HZ)
        self._audio.clear()
        self._model_off = False
        self._words_off = False
        if self.words is not None:
            self.words.restart()

    async def process(self, frame: AudioFrame, executor: Executor) -> list[TurnEvent]:
        """Feed one capture frame; the turn model (if any) runs in `executor`. Returns what it completed."""
        if self.model is None:
            return list(self._endpointer.process(frame))
        events: list[TurnEvent] = []
        epoch = self._epoch
        for piece in _vad_pieces(frame):
            if not self._endpointer.armed or self._epoch != epoch:
                break
            self._keep(piece)
            found = self._endpointer.process(piece)
            events += found
            if any(isinstance(e, (SpeechEnded, NoSpeech)) for e in found):
                break
            events += await self._after_vad(executor)
            if isinstance(events[-1] if events else None, SpeechEnded):
                break
        return events

    def _keep(self, piece: AudioFrame) -> None:
        self._audio += piece.pcm
        if self.words is not None and not self._words_off:
            self.words.feed(piece.pcm)
        if len(self._audio) > 2 * _KEEP_BYTES:
            del self._audio[:-_KEEP_BYTES]

    async def _after_vad(self, executor: Executor) -> list[TurnEvent]:
        """After each 30 ms of audio: during a pause, ask the model, or end by its answer or by the silence."""
        start = self._endpointer.silence_start
        if start is None:
            self._policy.speech()  # speaking (or not yet started): any pause so far is over
            return []
        silence = self._endpointer.heard_until - start
        if self._model_off:
            return [self._end("silence", start)] if silence >= self._fallback_samples else []
        step = self._policy.silence(silence)
        if isinstance(step, TurnEnd):
            return [self._end("silence", start)]
        if not isinstance(step, TurnAsk):
            return []
        epoch = self._epoch
        events = await self._judge(step, executor)
        if self._epoch != epoch:
            return []  # stopped or re-armed while the model was thinking: that answer is about nothing now
        judged = next((e for e in events if isinstance(e, TurnJudged)), None)
        if judged is None:
            end = self._policy.judged(step, None)
        else:
            end = self._policy.judged(
                step, judged.probability, judged.unfinished_word is True, judged.unlikely_end is True
            )
        if end is not None:
            events.append(self._end("model", start))
        elif judged is None and silence >= self._fallback_samples:
            events.append(self._end("silence", start))
        return events

    async def _judge(self, ask: TurnAsk, executor: Executor) -> list[TurnEvent]:
        """The last word (from the recognizer's thread), then one judgement in the worker thread: [TurnJudged],
        or [Error] (and the silence rule from now on).

        Word first, not side by side: while it keeps up with the microphone its answer is ready in ~1 ms, and
        when it has audio left to decode (a WAV fed at full speed, a loaded Pi) the model then does not compete
        with it for the CPU, so the judgement's time, and whether it times out, does not depend on the words."""
        assert self.model is not None
        audio, heard_until = bytes(self._audio[-_KEEP_BYTES:]), self._endpointer.heard_until
        silence_ms = ask.silence_samples * 1000 // INPUT_RATE_HZ
        word = await self._last_word()
        asked = time.perf_counter()
        try:
            judgement = await asyncio.wait_for(
                asyncio.get_running_loop().run_in_executor(executor, self.model.judge, audio), JUDGEMENT_TIMEOUT_S
            )
        except Exception as e:  # a timeout, or whatever onnxruntime raises: never let it hang or end the daemon
            self._model_off = True
            slow = isinstance(e, asyncio.TimeoutError)
            why = f"took longer than {JUDGEMENT_TIMEOUT_S:.1f} s" if slow else f"failed: {type(e).__name__}: {e}"
            message = (
                f"turn model judgement after {silence_ms} ms of silence {why}; this request ends after "
                f"{self.settings.end_silence_ms} ms of silence instead"
            )
            log.warning("%s", message)
            return [Error("turn_model_failed", message)]
        wait_ms = (time.perf_counter() - asked) * 1000
        log.debug(
            "turn model: p(finished) = %.3f after %d ms of silence; last word %r",
            judgement.probability,
            silence_ms,
            word.word if word else None,
        )
        return [
            TurnJudged(
                round(judgement.probability, 4),
                silence_ms,
                round(judgement.features_ms + judgement.inference_ms, 1),
                round(wait_ms, 1),
                heard_until,
                unfinished_word=word.unfinished if word else None,
                words_lag_ms=round(word.lag_ms, 1) if word else None,
                end_probability=round(word.end_probability, 4) if word else None,
                unlikely_end=word.unlikely_end if word else None,
            )
        ]

    async def _last_word(self) -> LastWord | None:
        """The recognizer's last word so far, or None: no recognizer, or (with a warning, and the model alone
        for the rest of this request) it failed or lags more than JUDGEMENT_TIMEOUT_S behind the audio. What it
        may take is the audio still queued for it (a WAV fed at full speed queues all of it) plus
        JUDGEMENT_TIMEOUT_S, so it must decode at least in real time, and a benchmark's result does not depend
        on the machine's load."""
        if self.words is None or self._words_off:
            return None
        allowed_s = JUDGEMENT_TIMEOUT_S + self.words.backlog_s
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.words.last_word()), allowed_s)
        except Exception as e:  # a timeout, or the recognizer's own error
            self._words_off = True
            slow = isinstance(e, asyncio.TimeoutError)
            why = f"lags more than {allowed_s:.1f} s behind" if slow else f"failed: {type(e).__name__}: {e}"
            log.warning("turn words: the recognizer %s; the turn model decides this request alone", why)
            return None

    def _end(self, reason: Literal["model", "silence"], voice_stopped: int) -> SpeechEnded:
        decided = self._endpointer.heard_until
        self._endpointer.stop()
        self._reset()
        event = SpeechEnded(voice_stopped, reason=reason, decided_sample=decided)
        log.debug("turn detector: %s", event)
        return event


def _vad_pieces(frame: AudioFrame) -> Iterator[AudioFrame]:
    """A capture frame in webrtcvad-sized pieces, so the decision is taken after every 30 ms of audio (the
    daemon's capture frames are already 30 ms; tests and tools may feed longer ones)."""
    step = VAD_FRAME_SAMPLES * SAMPLE_WIDTH
    for at in range(0, len(frame.pcm), step):
        yield AudioFrame(frame.pcm[at : at + step], frame.sample + at // SAMPLE_WIDTH)
