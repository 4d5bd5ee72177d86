"""Wake arbitration: several speakers hear one "hey jarvis"; the one that heard it best answers.

A speaker that detects the wake word publishes a claim on `hark/arbitration/<group>` (QoS 0, never
retained: a claim is only meaningful for `arbitration_ms`) and waits that window. Every speaker in the group
receives every claim and decides the same way: the loudest speech level wins, then the higher wake score,
then the smaller device id. Claims are matched by when they were *received* (within the window before or
after our own), not by their senders' clocks, so speakers need no synchronised time. A speaker that cannot
publish (no broker) answers by itself, as without arbitration.

The decision lives in the core (it is about who answers); MQTT is only its transport: daemon.mqtt.link hands
it the bridge's publish and feeds it the claims received.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from daemon.audio.frames import AudioFrame

log = logging.getLogger(__name__)

TOPIC_PREFIX = "hark/arbitration"
_KEEP_S = 5.0
"""Received claims older than this are forgotten (a wake phrase is over long before)."""


@dataclass(frozen=True, slots=True)
class Claim:
    """One speaker's bid for a wake word: how loud it heard the speech and how sure the model was."""

    device: str
    level_dbfs: float
    score: float
    wall_s: float
    """Sender's time.time(), for logs and traces only (decisions use the receive time)."""

    def encode(self) -> str:
        return json.dumps(
            {
                "device": self.device,
                "level_dbfs": round(self.level_dbfs, 2),
                "score": round(self.score, 4),
                "t": round(self.wall_s, 3),
            }
        )

    @classmethod
    def decode(cls, payload: bytes) -> Claim:
        """Raises ValueError naming what is wrong (the bridge logs it and ignores the claim)."""
        try:
            data = json.loads(payload)
            claim = cls(str(data["device"]), float(data["level_dbfs"]), float(data["score"]), float(data["t"]))
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"arbitration claim {payload[:80]!r}: expected JSON with device, level_dbfs, score, t ({e})"
            ) from e
        if not claim.device or not all(math.isfinite(v) for v in (claim.level_dbfs, claim.score)):
            raise ValueError(f"arbitration claim {payload[:80]!r}: empty device or a non-finite number")
        return claim


def rank(claim: Claim) -> tuple[float, float, str]:
    """Sort key, best first: loudest, then highest score, then smallest device id."""
    return (-claim.level_dbfs, -claim.score, claim.device)


def speech_level_dbfs(frames: Iterable[AudioFrame]) -> float:
    """Level of the wake phrase as this speaker heard it: the mean power of the louder half of 30 ms frames
    (the pauses around the phrase do not count), in dBFS; -120 for silence."""
    pcm = np.frombuffer(b"".join(f.pcm for f in frames), dtype=np.int16).astype(np.float64)
    n = len(pcm) // 480 * 480
    if n == 0:
        return -120.0
    power = np.sort(np.mean(pcm[:n].reshape(-1, 480) ** 2, axis=1))[n // 480 // 2 :]
    mean = float(np.mean(power))
    return -120.0 if mean <= 0 else max(-120.0, 10 * math.log10(mean / 32768.0**2))


class Arbiter:
    """One per speaker: `contest()` after a wake word; `on_message()` for every claim on the group topic."""

    def __init__(
        self,
        device: str,
        window_ms: int,
        publish: Callable[[str], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device = device
        self.window_s = window_ms / 1000
        self._publish = publish
        self._clock = clock
        self._received: deque[tuple[float, Claim]] = deque()

    def on_message(self, payload: bytes) -> None:
        """A claim arrived (loop thread). Our own echo and malformed claims are ignored."""
        try:
            claim = Claim.decode(payload)
        except ValueError as e:
            log.warning("%s", e)
            return
        if claim.device == self.device:
            return
        now = self._clock()
        self._received.append((now, claim))
        while self._received and self._received[0][0] < now - _KEEP_S:
            self._received.popleft()

    async def contest(self, level_dbfs: float, score: float) -> tuple[bool, list[Claim]]:
        """Claim the wake word and wait the window. Returns (we answer, every claim considered, best first)."""
        mine = Claim(self.device, level_dbfs, score, time.time())
        if not self._publish(mine.encode()):
            log.info("arbitration: broker unreachable; answering alone")
            return True, [mine]
        sent = self._clock()
        await asyncio.sleep(self.window_s)
        rivals = [c for at, c in self._received if abs(at - sent) <= self.window_s]
        claims = sorted({c.device: c for c in [*rivals, mine]}.values(), key=rank)
        won = claims[0] is mine
        log.info(
            "arbitration: %s (%s)",
            "we answer" if won else f"{claims[0].device} answers",
            ", ".join(f"{c.device} {c.level_dbfs:.1f} dBFS {c.score:.2f}" for c in claims),
        )
        return won, claims
