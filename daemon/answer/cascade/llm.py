"""The chat model: the conversation so far → the answer's text, streamed, with tool calls in between.

Tool calls arrive in pieces (`delta.tool_calls`, keyed by `index`); they are assembled, run through the
ToolRegistry (MQTT actions included) and their results sent back, then the model answers in words. Text
is yielded as it streams, so the voice can start on the first sentence while the model still writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from openai import AsyncOpenAI

from daemon.answer.cascade.stage import StageFailure, classify, url_of, within
from daemon.answer.reasons import FallbackReason
from daemon.answer.tools import ToolRegistry
from daemon.config.settings import CascadeLlmSettings, CostSettings
from daemon.observe import events as ev
from daemon.observe.bus import EventBus

log = logging.getLogger(__name__)
Message = dict[str, Any]
MTOK = 1_000_000


@dataclass
class ToolCall:
    """One call as its deltas arrive: id and name come first, the arguments in pieces."""

    id: str = ""
    name: str = ""
    arguments: str = ""

    def message(self) -> Message:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass
class Exchange:
    """What one request adds to the conversation besides the user's words and the spoken answer: the
    model's tool calls and their results (kept in the history so a follow-up knows what was done)."""

    messages: list[Message] = field(default_factory=list)
    text: str = ""
    """Everything the model said in words, in order (what the voice was given)."""


def chat_tools(tools: ToolRegistry) -> list[Message]:
    """The registry's tools in the chat format ({type: function, function: {...}})."""
    out = []
    for d in tools.definitions():
        out.append(
            {
                "type": "function",
                "function": {"name": d["name"], "description": d["description"], "parameters": d["parameters"]},
            }
        )
    return out


class ChatModel:
    def __init__(
        self,
        settings: CascadeLlmSettings,
        client: AsyncOpenAI,
        tools: ToolRegistry,
        prices: CostSettings,
        bus: EventBus,
        *,
        account: Callable[[ev.CascadeUsage], None],
    ) -> None:
        self.settings = settings
        self.client = client
        self.tools = tools
        self.prices = prices
        self.bus = bus
        self._account = account

    async def answer(self, conversation: list[Message], exchange: Exchange) -> AsyncIterator[str]:
        """Stream the answer to `conversation` (system + history + request); tool rounds go into `exchange`."""
        for round_no in range(self.settings.max_tool_rounds + 1):
            calls: dict[int, ToolCall] = {}
            offer_tools = round_no < self.settings.max_tool_rounds
            async for piece in self._one_round(conversation + exchange.messages, offer_tools, calls):
                exchange.text += piece
                yield piece
            if not calls:
                return
            ordered = [calls[i] for i in sorted(calls)]
            asked = {"role": "assistant", "content": None, "tool_calls": [c.message() for c in ordered]}
            exchange.messages.append(asked)
            outputs = await asyncio.gather(*(self.tools.call(c.name, c.id, c.arguments) for c in ordered))
            for call, output in zip(ordered, outputs, strict=True):
                log.info("tool %s(%s) → %s", call.name, call.arguments[:80], output[:80])
                exchange.messages.append({"role": "tool", "tool_call_id": call.id, "content": output})

    async def _one_round(
        self, messages: list[Message], offer_tools: bool, calls: dict[int, ToolCall]
    ) -> AsyncIterator[str]:
        s = self.settings
        kwargs: dict[str, Any] = {
            "model": s.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": s.max_tokens,  # what Ollama and llama.cpp read too
        }
        if offer_tools and (defs := chat_tools(self.tools)):
            kwargs["tools"] = defs
        self.bus.publish(ev.CascadeRequest("llm", s.model, url_of(s)))
        sent = time.monotonic()
        started = False
        usage: Any = None
        try:
            stream = await self.client.chat.completions.create(**kwargs, timeout=s.timeout_s)
            async with stream:
                async for chunk in within(stream, s.timeout_s):
                    if not started:
                        started = True
                        self.bus.publish(ev.CascadeFirst("llm", round((time.monotonic() - sent) * 1000, 1)))
                    if getattr(chunk, "object", None) != "chat.completion.chunk":
                        log.debug("chat stream: skipping an unknown event %r", getattr(chunk, "type", None))
                        continue
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices:
                        delta = choice.delta
                        for tc in delta.tool_calls or ():
                            call = calls.setdefault(tc.index, ToolCall())
                            call.id = tc.id or call.id
                            if tc.function is not None:
                                call.name = tc.function.name or call.name
                                call.arguments += tc.function.arguments or ""
                        if delta.content:
                            yield delta.content
        except StageFailure:
            raise
        except Exception as e:  # every SDK/network/format failure maps to one reason (stage.classify)
            raise classify("llm", e, started) from e
        finally:
            self._charge(usage)
        if not started:
            raise StageFailure("llm", FallbackReason.DROPPED, "the answer stream ended before any chunk")
        if broken := [c for c in calls.values() if not c.id or not c.name]:
            raise StageFailure("llm", FallbackReason.ERROR, f"a tool call came without id or name: {broken[0]}")

    def _charge(self, usage: Any) -> None:
        if usage is None:
            return
        i = int(getattr(usage, "prompt_tokens", 0) or 0)
        o = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = (i * self.prices.llm_in_per_mtok + o * self.prices.llm_out_per_mtok) / MTOK
        self._account(ev.CascadeUsage("llm", self.settings.model, round(cost, 8), input_tokens=i, output_tokens=o))
