"""The cascade responder: speech-to-text → chat model → voice behind the Responder seam.

The assistant cannot tell it from the Realtime responder: the request is buffered here while the user
speaks (nothing leaves the device before the end of the turn), transcribed when the turn ends, answered
by the chat model with the conversation so far, and spoken sentence by sentence while the model still
writes. A barge-in cuts the streams; the history then keeps only the sentences that were heard. Every
failure of every stage ends as a spoken sentence from the local voice and a count on the shared breaker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from openai import AsyncOpenAI

from daemon.answer.budget import DailyCost
from daemon.answer.cascade.llm import ChatModel, Exchange, Message
from daemon.answer.cascade.stage import Stage, StageFailure, make_client, warm
from daemon.answer.cascade.stt import Transcriber
from daemon.answer.cascade.tts import PiperSentences, RemoteSpeech, SentenceVoice
from daemon.answer.fallback import CircuitBreaker, FallbackGuard
from daemon.answer.reasons import FallbackReason
from daemon.answer.tools import ToolRegistry
from daemon.answer.voice import LocalVoice, SentenceSplitter
from daemon.audio.frames import INPUT_RATE_HZ, AudioChunk
from daemon.config.settings import Secrets, Settings
from daemon.observe import events as ev
from daemon.observe.bus import EventBus
from daemon.system import tasks

log = logging.getLogger(__name__)
PROBE_SILENCE = bytes(INPUT_RATE_HZ // 2 * 2)
"""0.5 s of silence: what the prober asks the speech-to-text server to transcribe."""
PIECES_DIR = "piper-pieces"
"""Where the local voice's cut is kept (in the state directory): made once, at the first start with Piper."""
FIRST_CLAUSE_WORDS = 4
"""A first clause this long ("The kitchen light is on,") is spoken before its sentence is written out; a
shorter one ("Sure,") waits for the sentence: it would only add a pause. The voice hears the comma, so the
clause ends on a continuing tone, as read aloud."""


@dataclass
class Spoken:
    """One answer as it is played: each sentence with where its audio starts and ends in the answer."""

    user: str
    exchange: Exchange
    sentences: list[tuple[str, float, float]] = field(default_factory=list)
    """(sentence, start_ms, end_ms) of the audio handed to the speaker."""
    first_at: float | None = None
    """time.monotonic() when the first audio went to the speaker (playback starts about then)."""
    kept: list[Message] | None = None
    """Its entry in the history, once kept."""

    @property
    def total_ms(self) -> float:
        return self.sentences[-1][2] if self.sentences else 0.0

    def still_playing(self, played_ms: float) -> bool:
        """Was the answer cut before its end? (`played_ms` = 0 also comes from a stop with no answer playing:
        then the wall clock says whether the answer could still have been playing.)"""
        if self.first_at is None or played_ms >= self.total_ms:
            return False
        return (time.monotonic() - self.first_at) * 1000 < self.total_ms + 500

    def heard(self, played_ms: float | None) -> str:
        """The words of the answer that were played (all of them when `played_ms` is None)."""
        words: list[str] = []
        for text, start, end in self.sentences:
            if played_ms is None or end <= played_ms:
                words.append(text)
            elif start < played_ms:
                parts = text.split()
                keep = int(len(parts) * (played_ms - start) / max(end - start, 1.0))
                if keep:
                    words.append(" ".join(parts[:keep]) + "…")
        return " ".join(words)


class CascadeResponder:
    """Responder (see daemon.answer.responder) backed by three OpenAI-compatible servers."""

    def __init__(
        self,
        settings: Settings,
        secrets: Secrets,
        bus: EventBus,
        voice: LocalVoice | None,
        tools: ToolRegistry | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.voice = voice
        self.tools = tools or ToolRegistry(settings.tools)
        c = settings.cascade
        self.spend = DailyCost(settings.state_dir)
        self._clients: dict[Stage, AsyncOpenAI | StageFailure] = {
            "stt": make_client("stt", c.stt, secrets),
            "llm": make_client("llm", c.llm, secrets),
        }
        if c.tts != "piper":
            self._clients["tts"] = make_client("tts", c.tts, secrets)
        self.stt: Transcriber | None = None
        self.llm: ChatModel | None = None
        self.speech: SentenceVoice | None = None
        if isinstance(stt := self._clients["stt"], AsyncOpenAI):
            self.stt = Transcriber(c.stt, stt, bus)
        if isinstance(llm := self._clients["llm"], AsyncOpenAI):
            self.llm = ChatModel(c.llm, llm, self.tools, settings.cost, bus, account=self._account)
        if c.tts == "piper":
            self.speech = PiperSentences(voice, settings.state_dir / PIECES_DIR) if voice is not None else None
        elif isinstance(tts := self._clients["tts"], AsyncOpenAI):
            self.speech = RemoteSpeech(c.tts, tts, settings.cost, bus, self._account)
        probe_s = c.stt.timeout_s + c.llm.timeout_s + (c.tts.timeout_s if c.tts != "piper" else 0.0)
        self.guard = FallbackGuard(settings.fallback, bus, voice, self._probe, probe_timeout_s=probe_s + 1.0)
        self._instructions = c.llm.instructions or settings.realtime.instructions
        max_s = settings.endpoint.max_utterance_s + max(settings.endpoint.start_timeout_s, 10.0) + 2.0
        self._max_request_bytes = int(max_s * INPUT_RATE_HZ) * 2
        self._request = bytearray()
        self._history: list[list[Message]] = []
        self._last_turn_at = 0.0
        self._current: Spoken | None = None
        """The answer being written and played, from its first sentence until it was heard or cut."""
        self._turn_usage: dict[str, int] = {}
        self._turn_cost = 0.0
        self._warming: asyncio.Task[None] | None = None

    @property
    def breaker(self) -> CircuitBreaker:
        return self.guard.breaker

    # --- capture side: everything stays on the device until the turn ends ----------------------------------

    def prepare(self) -> None:
        """A request begins: open the stages' connections while the user speaks (cascade.warm_connections).
        Nothing of the request is sent; a stage that will not be tried (breaker open, cap reached) is left
        alone."""
        if not self.settings.cascade.warm_connections or self._warming is not None and not self._warming.done():
            return
        if self.guard.open or self.spend.over(self.settings.cost.daily_limit):
            return
        self._warming = tasks.spawn(self._warm(), "hark-cascade-warm")

    async def _warm(self) -> None:
        c = self.settings.cascade
        timeout_s = {"stt": c.stt.timeout_s, "llm": c.llm.timeout_s, "tts": c.tts.timeout_s if c.tts != "piper" else 0}
        clients = [(stage, client) for stage, client in self._clients.items() if isinstance(client, AsyncOpenAI)]
        await asyncio.gather(*(warm(stage, client, timeout_s[stage]) for stage, client in clients))

    def append(self, pcm16k: bytes) -> None:
        room = self._max_request_bytes - len(self._request)
        if room > 0:
            self._request += pcm16k[:room]

    def discard(self) -> None:
        self._request.clear()

    # --- answer side ----------------------------------------------------------------------------------------

    async def answer(self) -> AsyncGenerator[AudioChunk, None]:
        pcm, self._request = bytes(self._request), bytearray()
        async for chunk in self._turn(pcm, None):
            yield chunk

    async def ask(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        self._request.clear()
        async for chunk in self._turn(None, text):
            yield chunk

    async def _turn(self, pcm: bytes | None, text: str | None) -> AsyncGenerator[AudioChunk, None]:
        self._turn_usage, self._turn_cost = {}, 0.0
        status = "cancelled"  # unless the turn gets to say otherwise (a barge-in closes this generator)
        try:
            blocked = self._blocked(need_stt=pcm is not None)
            if blocked is not None:
                status = "not tried"
                async for chunk in self.guard.speak(blocked):
                    yield chunk
                return
            try:
                if pcm is not None:
                    text = await self._transcribe(pcm)
                if not text:
                    log.info("nothing was understood: no answer")
                    status = "completed"
                    return
                async for chunk in self._respond(text):
                    yield chunk
                self.guard.succeeded()  # a real answer, played whole: the one thing that closes the breaker
                status = "completed"
            except StageFailure as failure:
                status = "failed"
                log.warning("cascade %s failed (%s): %s", failure.stage, failure.reason.value, failure.detail)
                self.bus.publish(ev.Error(f"cascade_{failure.stage}", f"cascade.{failure.stage}: {failure.detail}"))
                self.guard.failed(failure.reason)
                self._keep(played_ms=None)
                async for chunk in self.guard.speak(failure.reason):
                    yield chunk
        finally:
            if status in ("completed", "failed") or self._turn_usage:
                self.bus.publish(ev.ResponseDone(status, dict(self._turn_usage), round(self._turn_cost, 8)))

    def _blocked(self, need_stt: bool) -> FallbackReason | None:
        """Why the cloud is not even tried for this turn, if it is not."""
        stages: list[Stage] = ["stt", "llm", "tts"] if need_stt else ["llm", "tts"]
        for stage in stages:
            client = self._clients.get(stage)
            if isinstance(client, StageFailure):
                log.warning("%s", client.detail)
                return client.reason
        if self.speech is None:
            log.error('cascade.tts = "piper" but the local voice is unavailable: run scripts/fetch-models')
            return FallbackReason.ERROR
        limit = self.settings.cost.daily_limit
        if self.spend.over(limit):
            log.warning("today's estimated spend $%.2f reached cost.daily_limit $%.2f", self.spend.spent_today, limit)
            return FallbackReason.COST_LIMIT
        if self.guard.open:
            return FallbackReason.BREAKER_OPEN
        return None

    async def _transcribe(self, pcm: bytes) -> str:
        assert self.stt is not None
        heard = await self.stt.transcribe(pcm, lambda d: self.bus.publish(ev.TranscriptDelta("user", d)))
        s, prices = self.settings.cascade.stt, self.settings.cost
        self._account(
            ev.CascadeUsage(
                "stt",
                s.model,
                round(heard.audio_s / 60 * prices.stt_per_minute, 8),
                audio_s=round(heard.audio_s, 3),
                input_tokens=heard.input_tokens,
                output_tokens=heard.output_tokens,
            )
        )
        self.bus.publish(ev.Transcript("user", heard.text))
        return heard.text

    async def _respond(self, text: str) -> AsyncGenerator[AudioChunk, None]:
        """The model's answer, spoken sentence by sentence as it is written."""
        assert self.llm is not None and self.speech is not None
        self._expire_history()
        conversation: list[Message] = [{"role": "system", "content": self._instructions}]
        conversation += [m for turn in self._history for m in turn]
        conversation.append({"role": "user", "content": text})
        spoken = self._current = Spoken(text, Exchange())
        sentences: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        writer = asyncio.create_task(self._write(conversation, spoken.exchange, sentences), name="hark-cascade-llm")
        at_ms = 0.0
        try:
            while (item := await sentences.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                start_ms = at_ms
                async for chunk in self.speech.speak(item):
                    at_ms += len(chunk.pcm) / 2 / chunk.channels / chunk.rate_hz * 1000
                    if spoken.first_at is None:
                        spoken.first_at = time.monotonic()
                    if spoken.sentences and spoken.sentences[-1][1] == start_ms:
                        spoken.sentences[-1] = (item, start_ms, at_ms)
                    else:
                        spoken.sentences.append((item, start_ms, at_ms))
                    yield chunk
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        self._keep(played_ms=None)  # all of it, unless a barge-in during the playout trims it (interrupt)

    async def _write(
        self, conversation: list[Message], exchange: Exchange, out: asyncio.Queue[str | BaseException | None]
    ) -> None:
        """The model's text → complete sentences, queued for the voice while the model goes on writing."""
        assert self.llm is not None
        splitter = SentenceSplitter()
        first = True  # until the first piece went to the voice: a long first clause may go ahead of its sentence
        try:
            async for piece in self.llm.answer(conversation, exchange):
                self.bus.publish(ev.TranscriptDelta("assistant", piece))
                queued = splitter.feed(piece)
                if first and not queued and (clause := splitter.clause(FIRST_CLAUSE_WORDS)) is not None:
                    queued = [clause]
                for sentence in queued:
                    out.put_nowait(sentence)
                if queued and first:
                    first = False
                    # the voice starts now: without this, the rest of the answer already received (chunks read
                    # without waiting) would be parsed first, a few ms before the first sentence is even sent
                    await asyncio.sleep(0)
            if rest := splitter.flush():
                out.put_nowait(rest)
        except Exception as e:  # StageFailure or a bug: the speaking side raises it in the turn
            out.put_nowait(e)
            return
        out.put_nowait(None)

    # --- the conversation -----------------------------------------------------------------------------------

    def _keep(self, played_ms: float | None) -> None:
        """Add the current answer to the history: what was heard of it (all of it unless cut)."""
        spoken = self._current
        if spoken is None:
            return
        if spoken.kept is not None:  # kept whole when its audio was handed over; cut during the playout
            if spoken.kept and spoken.kept[-1].get("role") == "assistant" and spoken.kept[-1].get("tool_calls") is None:
                spoken.kept.pop()
            self._current = None
        else:
            spoken.kept = [{"role": "user", "content": spoken.user}, *spoken.exchange.messages]
            self._history.append(spoken.kept)
        heard = spoken.heard(played_ms)
        if heard:
            spoken.kept.append({"role": "assistant", "content": heard})
            self.bus.publish(ev.Transcript("assistant", heard))
        cap = self.settings.cascade.history_turns
        self._history = self._history[-cap:] if cap else []
        self._last_turn_at = time.monotonic()

    def _expire_history(self) -> None:
        idle_s = self.settings.cascade.history_idle_s
        if self._history and time.monotonic() - self._last_turn_at > idle_s:
            log.info("conversation idle for more than %.0f s: starting afresh", idle_s)
            self._history.clear()

    def _account(self, usage: ev.CascadeUsage) -> None:
        """One stage's usage: on the bus (trace, MQTT), into today's spend and this turn's total."""
        self.bus.publish(usage)
        self.spend.add(usage.cost_usd)
        self._turn_cost += usage.cost_usd
        for kind, count in (("input", usage.input_tokens), ("output", usage.output_tokens)):
            if count:
                key = f"{usage.stage}_{kind}"
                self._turn_usage[key] = self._turn_usage.get(key, 0) + count

    # --- barge-in, probe, close -----------------------------------------------------------------------------

    async def interrupt(self, played_ms: int) -> None:
        """The answer was cut after `played_ms`: its streams are already closed (the assistant cancelled the
        turn); the history keeps only the part that was heard."""
        spoken = self._current
        if spoken is not None and (spoken.kept is None or spoken.still_playing(played_ms)):
            self._keep(played_ms=float(played_ms))
        self._current = None

    async def _probe(self) -> None:
        """Does every stage give a real answer again? Raises if any does not (the breaker stays open)."""
        if self.stt is not None:
            await self.stt.transcribe(PROBE_SILENCE)
        assert self.llm is not None
        words = ""
        async for piece in self.llm.answer([{"role": "user", "content": "Say OK."}], Exchange()):
            words += piece
        if not words.strip():
            raise RuntimeError("the chat model answered the probe with no words")
        if isinstance(self.speech, RemoteSpeech):
            audio = [chunk async for chunk in self.speech.speak("OK.")]
            if not audio:
                raise RuntimeError("the voice answered the probe with no audio")

    async def aclose(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warming
        await self.guard.aclose()
        for client in self._clients.values():
            if isinstance(client, AsyncOpenAI):
                await client.close()
