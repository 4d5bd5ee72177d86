"""Run the whole daemon on a WAV (or on the PulseAudio rig) and hand back its trace: the one way
end-to-end tests, benchmarks and the fault matrix drive Hark."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from daemon import app
from daemon.app import Daemon
from daemon.config import loader as config_file
from daemon.config.settings import Secrets, Settings
from daemon.observe.bus import EventBus
from tests.records import record_into


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def settings_for(tmp: Path, models_dir: Path, wav: Path | None = None, **sections: Any) -> Settings:
    """Test settings: WAV in (fast), WAV out, private state dir, no chimes, no follow-up unless asked."""
    raw: dict[str, Any] = {
        "audio": {
            "input": f"wav:{wav}" if wav else "default",
            "output": f"wav:{tmp / 'out.wav'}",
            "realtime_pace": False,
        },
        "paths": {"models": str(models_dir), "state": str(tmp / "state")},
        "chimes": {"wake": "", "done": "", "error": ""},
        "conversation": {"followup_seconds": 0},
        "realtime": {"transcription_model": ""},
    }
    return config_file.from_dict(merge(raw, sections))


@dataclass
class Run:
    records: list[dict[str, Any]] = field(default_factory=list)
    status: int | None = None

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["event"] == name]

    def states(self) -> list[str]:
        return [r["to"] for r in self.events("state")]

    def first(self, name: str) -> dict[str, Any]:
        found = self.events(name)
        assert found, f"no {name} event in the trace: {[r['event'] for r in self.records]}"
        return found[0]


async def start(settings: Settings, api_key: str = "", trace_path: Path | None = None) -> tuple[Daemon, Run]:
    run = Run()
    bus = record_into(EventBus(), run.records.append)
    trace_file = str(trace_path) if trace_path else None
    daemon = await app.build(settings, Secrets(openai_api_key=api_key), bus, trace_file)
    return daemon, run


async def run_once(settings: Settings, api_key: str = "", timeout_s: float = 120.0) -> Run:
    """Build, run until the WAV ends and the turn is finished, close. Bounded by `timeout_s`."""
    daemon, run = await start(settings, api_key)
    try:
        run.status = await asyncio.wait_for(daemon.assistant.run(), timeout_s)
    finally:
        await daemon.aclose()
    return run


async def wait_for_event(run: Run, name: str, timeout_s: float = 30.0, count: int = 1, **match: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        found = [r for r in run.events(name) if all(r.get(k) == v for k, v in match.items())]
        if len(found) >= count:
            return found[count - 1]
        if loop.time() > deadline:
            raise AssertionError(
                f"no {name} {match or ''} within {timeout_s} s; saw {[r['event'] for r in run.records][-30:]}"
            )
        await asyncio.sleep(0.02)


REPO = Path(__file__).resolve().parent.parent


def hark(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m daemon ARGS` from the checkout, as a person would run `hark` (bounded, output captured)."""
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
