"""What the three cascade stages share: one SDK client per server, bounded waits, and one mapping from
every way a request can fail to the FallbackReason the user hears.

Why bounded per piece: a server that accepted the request can still stall before its first byte or in the
middle of a stream; `within` bounds each wait by the stage's `timeout_s`, so a stall is a `timeout`
and never a silent speaker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator
from typing import Literal, TypeVar

import httpx2
import openai
from openai import AsyncOpenAI

from daemon.answer.reasons import FallbackReason
from daemon.config.settings import CascadeStage, Secrets

log = logging.getLogger(__name__)

Stage = Literal["stt", "llm", "tts"]
NO_KEY = "not-needed"
"""Sent as the key to a server that needs none (the SDK insists on some string; Ollama ignores it)."""
OPENAI_URL = "https://api.openai.com/v1"
T = TypeVar("T")


class StageFailure(Exception):
    """A stage could not do its part: `reason` says what the user hears, the message what an admin does."""

    def __init__(self, stage: Stage, reason: FallbackReason, detail: str) -> None:
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.reason = reason
        self.detail = detail


def make_client(stage: Stage, settings: CascadeStage, secrets: Secrets) -> AsyncOpenAI | StageFailure:
    """The SDK client for one stage, or why there cannot be one (its key variable is empty)."""
    key = secrets.api_key(settings.api_key_env)
    if settings.api_key_env and not key:
        return StageFailure(
            stage,
            FallbackReason.NO_API_KEY,
            f"cascade.{stage}.api_key_env names {settings.api_key_env}, which is not set; export it (or set "
            f'api_key_env = "" for a server that needs no key)',
        )
    return AsyncOpenAI(
        base_url=settings.base_url or OPENAI_URL,
        api_key=key or NO_KEY,
        max_retries=0,  # a retry after a failure only makes the user wait longer: fall back at once instead
        timeout=settings.timeout_s,
    )


def url_of(settings: CascadeStage) -> str:
    return settings.base_url or OPENAI_URL


def classify(stage: Stage, error: BaseException, started: bool) -> StageFailure:
    """Every failure of an SDK call → the reason spoken. `started`: part of the stream had arrived."""
    if isinstance(error, StageFailure):
        return error
    name = type(error).__name__
    if isinstance(error, (openai.APITimeoutError, asyncio.TimeoutError)):
        return StageFailure(stage, FallbackReason.TIMEOUT, f"no answer in time ({name})")
    if isinstance(error, httpx2.TimeoutException):
        return StageFailure(stage, FallbackReason.TIMEOUT, f"no answer in time ({name})")
    if isinstance(error, (openai.APIConnectionError, httpx2.TransportError)):
        if started:
            return StageFailure(stage, FallbackReason.DROPPED, f"the stream broke off ({error.__cause__ or error})")
        return StageFailure(stage, FallbackReason.UNREACHABLE, f"cannot connect ({error.__cause__ or error})")
    if isinstance(error, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return StageFailure(
            stage, FallbackReason.AUTH, f"the key was refused (HTTP {error.status_code}); check cascade.{stage}"
        )
    if isinstance(error, openai.APIStatusError):
        return StageFailure(stage, FallbackReason.ERROR, f"HTTP {error.status_code}: {error.message}")
    if isinstance(error, openai.APIError):
        return StageFailure(stage, FallbackReason.ERROR, f"the server reported an error: {error.message}")
    # a chunk the SDK could not read (bad JSON, missing fields): the server broke the protocol
    return StageFailure(stage, FallbackReason.ERROR, f"malformed response ({name}: {error})")


async def within(stream: AsyncIterable[T], timeout_s: float) -> AsyncIterator[T]:
    """The stream's items, each awaited for at most `timeout_s` (a stall raises TimeoutError)."""
    items = stream.__aiter__()
    while True:
        try:
            item = await asyncio.wait_for(items.__anext__(), timeout_s)
        except StopAsyncIteration:
            return
        yield item


async def check_stage(stage: Stage, settings: CascadeStage, secrets: Secrets) -> tuple[bool, str]:
    """`hark check`: is the server reachable, is the key accepted, is the model listed? (ok, line with fix)"""
    where = f"cascade.{stage} ({url_of(settings)}, model {settings.model})"
    client = make_client(stage, settings, secrets)
    if isinstance(client, StageFailure):
        return False, f"{where}: {client.detail}"
    try:
        page = await asyncio.wait_for(client.models.list(), settings.timeout_s)
        models = [m.id async for m in page]
    except Exception as e:  # report whatever went wrong as the fix to make
        failure = classify(stage, e, started=False)
        fixes = {
            FallbackReason.UNREACHABLE: f"is the server running? check cascade.{stage}.base_url",
            FallbackReason.AUTH: f"check the key in ${settings.api_key_env or '(none)'} (cascade.{stage}.api_key_env)",
            FallbackReason.TIMEOUT: f"the server did not answer within cascade.{stage}.timeout_s",
        }
        return False, f"{where}: {failure.detail}; {fixes.get(failure.reason, 'see the server log')}"
    finally:
        await client.close()
    if settings.model not in models:
        shown = ", ".join(models[:8]) + (", ..." if len(models) > 8 else "")
        return (
            False,
            f"{where}: the server does not list this model (it lists: {shown or 'none'}); pull it or fix the name",
        )
    return True, f"{where}: reachable, key accepted, model listed"
