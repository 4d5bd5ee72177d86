"""Token usage per response and its estimated cost (the daily total lives in daemon.answer.budget).

Why here and not in the client: the cost rules (cached input is cheap, audio costs far more than text) are
what a person tunes when the bill surprises them, so they live in one small, testable place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.config.settings import CostSettings

MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens by modality, as `response.done` reports them. Cached tokens are part of the input counts."""

    input_text: int = 0
    input_audio: int = 0
    input_cached: int = 0
    input_cached_audio: int = 0
    output_text: int = 0
    output_audio: int = 0

    @property
    def total(self) -> int:
        return self.input_text + self.input_audio + self.output_text + self.output_audio

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_text + other.input_text,
            self.input_audio + other.input_audio,
            self.input_cached + other.input_cached,
            self.input_cached_audio + other.input_cached_audio,
            self.output_text + other.output_text,
            self.output_audio + other.output_audio,
        )

    @classmethod
    def from_api(cls, usage: Any) -> Usage:
        """From the SDK's RealtimeResponseUsage (or None: a response without usage costs nothing known)."""
        if usage is None:
            return cls()
        ind = getattr(usage, "input_token_details", None)
        outd = getattr(usage, "output_token_details", None)
        cached_d = getattr(ind, "cached_tokens_details", None)
        return cls(
            input_text=_int(ind, "text_tokens"),
            input_audio=_int(ind, "audio_tokens"),
            input_cached=_int(ind, "cached_tokens"),
            input_cached_audio=_int(cached_d, "audio_tokens"),
            output_text=_int(outd, "text_tokens"),
            output_audio=_int(outd, "audio_tokens"),
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "input_text": self.input_text,
            "input_audio": self.input_audio,
            "input_cached": self.input_cached,
            "output_text": self.output_text,
            "output_audio": self.output_audio,
        }


def _int(obj: Any, name: str) -> int:
    value = getattr(obj, name, None) if obj is not None else None
    return value if isinstance(value, int) and value >= 0 else 0


def cost_usd(usage: Usage, prices: CostSettings) -> float:
    """Estimated USD: uncached input at its modality's price, cached input at the cached price."""
    cached_audio = min(usage.input_cached_audio, usage.input_audio)
    cached_text = min(max(usage.input_cached - cached_audio, 0), usage.input_text)
    usd = (
        (usage.input_text - cached_text) * prices.text_in_per_mtok
        + (usage.input_audio - cached_audio) * prices.audio_in_per_mtok
        + (cached_text + cached_audio) * prices.cached_in_per_mtok
        + usage.output_text * prices.text_out_per_mtok
        + usage.output_audio * prices.audio_out_per_mtok
    )
    return usd / MTOK
