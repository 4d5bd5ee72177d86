"""`hark demo` and `hark say`: the real pipeline with no microphone and no key needed.

The demo speaks a wake phrase and a request with the local Piper voice (espeak-ng when present: its
"hey jarvis" scores ~0.99 with the stock model), feeds it through the daemon as a WAV input, and prints
the state timeline as it happens. Without an API key the answer comes from the Piper fallback.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

from daemon import app
from daemon.audio.frames import INPUT_RATE_HZ
from daemon.audio.resample import StreamResampler, read_wav_mono16
from daemon.config.settings import Secrets, Settings
from daemon.observe import events as ev
from daemon.observe.bus import EventBus

log = logging.getLogger(__name__)


def _espeak(text: str, path: Path) -> bytes | None:
    if shutil.which("espeak-ng") is None:
        return None
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True, capture_output=True)
    pcm, _ = read_wav_mono16(path)
    return pcm


async def _piper(settings: Settings, text: str) -> bytes:
    """`text` in the local voice as 16 kHz mono PCM16, resampled by the project's one resampler."""
    from daemon.answer.voice import LocalVoice

    voice = LocalVoice(settings.fallback, settings.models_dir)
    parts = []
    resampler: StreamResampler | None = None
    try:
        async for chunk in voice.speak(text):
            if resampler is None or resampler.in_rate_hz != chunk.rate_hz:
                if resampler is not None:
                    parts.append(resampler.process(b"", last=True))
                resampler = StreamResampler(chunk.rate_hz, INPUT_RATE_HZ)
            parts.append(resampler.process(chunk.pcm))
        if resampler is not None:
            parts.append(resampler.process(b"", last=True))
    finally:
        await voice.close()
    return b"".join(parts)


async def make_utterance(settings: Settings, request: str, path: Path) -> Path:
    """1 s silence, "Hey Jarvis", 0.4 s, the request, 2 s silence, as 16 kHz mono WAV."""
    with tempfile.TemporaryDirectory() as tmp:
        wake = _espeak("Hey Jarvis", Path(tmp, "wake.wav")) or await _piper(settings, "Hey Jarvis!")
        ask = _espeak(request, Path(tmp, "ask.wav")) or await _piper(settings, request)

    def silence(s: float) -> bytes:
        return bytes(int(INPUT_RATE_HZ * s) * 2)

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(INPUT_RATE_HZ)
        w.writeframes(silence(1.0) + wake + silence(0.4) + ask + silence(2.0))
    return path


_SHOWN = (
    ev.WakeDetected,
    ev.SpeechStarted,
    ev.SpeechEnded,
    ev.NoSpeech,
    ev.PlaybackStarted,
    ev.PlaybackStopped,
    ev.Fallback,
    ev.Transcript,
    ev.ResponseDone,
    ev.RealtimeError,
    ev.Error,
)


def _timeline(bus: EventBus, start: float) -> None:
    """Print the state changes and the events a person follows a turn by, as they happen."""

    def state(e: ev.StateChanged) -> None:
        print(f"{e.t - start:7.2f}s  state  {e.before:>10} → {e.after:<10} {e.reason}")

    def other(e: ev.Event) -> None:
        fields = {k: v for k, v in e.record().items() if k not in ("t", "event")}
        print(f"{e.t - start:7.2f}s  {e.NAME:<16} {fields}")

    bus.subscribe(ev.StateChanged, state)
    for kind in _SHOWN:
        bus.subscribe(kind, other)


async def run_demo(
    settings: Settings, secrets: Secrets, request: str, output: str | None, trace_path: str | None
) -> int:
    import time

    workdir = Path(tempfile.mkdtemp(prefix="hark-demo-"))
    wav = await make_utterance(settings, request, workdir / "utterance.wav")
    out = output or _default_output(settings)
    audio = settings.audio.model_copy(update={"input": f"wav:{wav}", "output": out, "realtime_pace": False})
    conversation = settings.conversation.model_copy(update={"followup_seconds": 0.0})
    settings = settings.model_copy(update={"audio": audio, "conversation": conversation})
    print(f'hark demo: said "Hey Jarvis, {request}" into {wav}; answer goes to {out}')
    bus = EventBus()
    _timeline(bus, time.monotonic())
    daemon = await app.build(settings, secrets, bus, trace_path)
    try:
        status = await daemon.assistant.run()
    finally:
        await daemon.aclose()
    return status


def _default_output(settings: Settings) -> str:
    from daemon.audio.devices import DeviceError, resolve

    if settings.audio.output.startswith("wav:"):
        return settings.audio.output
    try:
        resolve(settings.audio.output, "output")
        return settings.audio.output
    except (DeviceError, OSError) as e:
        log.info("no speaker (%s): writing the answer to hark-demo-answer.wav", e)
        return "wav:hark-demo-answer.wav"
    except Exception as e:  # PortAudio failing to initialise at all
        log.info("no audio system (%s): writing the answer to hark-demo-answer.wav", e)
        return "wav:hark-demo-answer.wav"


async def say(settings: Settings, text: str) -> int:
    """`hark say`: the local voice through the configured speaker, no cloud, no microphone."""
    from daemon.answer.voice import LocalVoice
    from daemon.audio.sink import open_sink

    voice = LocalVoice(settings.fallback, settings.models_dir)
    sink = open_sink(settings.audio, EventBus())
    await sink.start()
    try:
        sink.begin()
        async for chunk in voice.speak(text):
            sink.write(chunk)
        played = await asyncio.wait_for(sink.drain(), timeout=120)
        print(f"said {text!r} ({played} ms)")
    finally:
        await voice.close()
        await sink.aclose()
    return 0
