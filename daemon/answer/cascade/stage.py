"""What the three cascade stages share: one SDK client per server, bounded waits, and one mapping from
every way a request can fail to the FallbackReason the user hears.

Why bounded per piece: a server that accepted the request can still stall before its first byte or in the
middle of a stream; `within` bounds each wait by the stage's `timeout_s`, so a stall is a `timeout`
and never a silent speaker.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Literal, TypeVar

import httpx2
import openai
from openai import AsyncOpenAI, AsyncStream, DefaultAsyncHttpxClient

from daemon.answer.reasons import FallbackReason
from daemon.config.settings import CascadeStage, Secrets
from daemon.system import tasks

log = logging.getLogger(__name__)

Stage = Literal["stt", "llm", "tts"]
NO_KEY = "not-needed"
"""Sent as the key to a server that needs none (the SDK insists on some string; Ollama ignores it)."""
OPENAI_URL = "https://api.openai.com/v1"
KEEPALIVE_S = 120.0
"""How long an idle connection is kept for the next request. The SDK's default (5 s) is shorter than many
requests: the connection opened at the wake word would be closed again before the turn ended. A server that
closes it sooner is noticed when the connection is next taken from the pool (then a new one is opened)."""
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
        # one pool per stage for the daemon's life; its connections outlive a spoken request (KEEPALIVE_S)
        http_client=DefaultAsyncHttpxClient(
            limits=httpx2.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE_S)
        ),
    )


async def warm(stage: Stage, client: AsyncOpenAI, timeout_s: float) -> None:
    """Open the stage's connection now, with a cheap authenticated request (GET /models), so that the name
    lookup and the TCP and TLS handshakes happen while the user is still speaking, not after the turn ended
    (on a cloud server they cost several round trips; on this machine a new local connection costs 2–13 ms).
    A failure here is not the user's problem yet: the real request reports it. Never sends audio or text."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(client.models.list(), timeout_s)
    except Exception as e:  # whatever the cause: logged; the request itself will meet it and say so
        log.debug("cascade.%s: warming the connection failed (%s: %s)", stage, type(e).__name__, e)
        return
    log.debug("cascade.%s: connection warm in %.0f ms", stage, (time.monotonic() - started) * 1000)


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
    """The stream's items, each awaited for at most `timeout_s` (a stall raises TimeoutError).

    `asyncio.timeout` rather than `wait_for`: the item is read in this task, not in a new task per item, so
    an item that has already arrived costs no extra turn of the event loop (several per answer)."""
    items = stream.__aiter__()
    while True:
        try:
            if sys.version_info >= (3, 11):
                async with asyncio.timeout(timeout_s):
                    item = await items.__anext__()
            else:  # Python 3.10 has no asyncio.timeout
                item = await asyncio.wait_for(items.__anext__(), timeout_s)
        except StopAsyncIteration:
            return
        yield item


def finish_later(stream: AsyncStream[Any], timeout_s: float) -> None:
    """Read the rest of a stream whose answer is already complete (on HTTP/1.1, the end of its body) in the
    background, then close it. Why: a response read to its end gives its connection back to the pool for the
    next request; one closed early closes the connection (a new handshake next time). The caller goes on at
    once: the end of the body is not waited for on the way to the answer."""
    tasks.spawn(_finish(stream, timeout_s), "hark-cascade-finish")


async def _finish(stream: AsyncStream[Any], timeout_s: float) -> None:
    try:
        async for _ in within(stream, timeout_s):
            pass
    except Exception as e:  # the answer was complete: whatever breaks now only costs the connection
        log.debug("the rest of a finished stream could not be read (%s: %s)", type(e).__name__, e)
    finally:
        await stream.close()


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
