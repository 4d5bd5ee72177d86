"""Echo cancellation on the PulseAudio rig with a real echo path: the speaker's sound comes back into the
mic 50 ms late (module-loopback), louder than a user would be; real PyAudio streams both ways, the
reference tapped where the sink hands samples to PortAudio. Two captures of the same mic run side by side,
one cancelling, one raw."""

from __future__ import annotations

import asyncio

import numpy as np

from daemon.audio.echo import FarEnd
from daemon.audio.frames import INPUT_RATE_HZ, AudioChunk, AudioFrame
from daemon.audio.sink import PyAudioSink
from daemon.audio.source import PyAudioSource
from daemon.observe.bus import EventBus
from tests.fixtures_audio import PulseRig
from tests.speech import Speech, read_wav


class _Collect:
    def __init__(self, source: PyAudioSource) -> None:
        self.source = source
        self.frames: list[AudioFrame] = []

    async def run(self) -> None:
        async for item in self.source:
            if isinstance(item, AudioFrame):
                self.frames.append(item)

    def pcm(self, start: int) -> np.ndarray:
        return np.frombuffer(b"".join(f.pcm for f in self.frames[start:]), dtype=np.int16)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


async def test_the_answer_is_cancelled_from_the_microphone_on_a_real_echo_path(
    pulse_rig: PulseRig, speech: Speech
) -> None:
    answer = np.concatenate(
        [
            read_wav(speech.piper(t))[0]
            for t in (
                "The weather tomorrow will be sunny with a high of twenty two degrees and light winds.",
                "Your next meeting is at three o'clock with the design team, in the small conference room.",
            )
        ]
    )
    bus = EventBus()
    ref = FarEnd()
    sink = PyAudioSink("default", bus, volume=100, echo_ref=ref)
    await sink.start()
    on = _Collect(PyAudioSource("default", bus, echo_mode="on", echo_ref=ref))
    off = _Collect(PyAudioSource("default", bus))
    tasks = [asyncio.create_task(c.run()) for c in (on, off)]
    await asyncio.to_thread(pulse_rig.echo_path, 50, "130%")
    try:
        await asyncio.sleep(1.0)  # both captures running
        assert on.source.echo_cancelling and not off.source.echo_cancelling
        # Steady state is what a household lives with: a first answer lets the delay estimate and AEC3 settle
        # on this echo path (on a busy machine that can take most of an answer), the second one is measured.
        for measured in (False, True):
            marks = len(on.frames), len(off.frames)
            sink.begin()
            sink.write(AudioChunk(answer.tobytes(), INPUT_RATE_HZ))
            await asyncio.wait_for(sink.drain(), len(answer) / INPUT_RATE_HZ + 10)
            if not measured:
                await asyncio.sleep(0.5)  # the echo of its tail has come back
    finally:
        await asyncio.to_thread(pulse_rig.no_echo_path)
        for c in (on, off):
            await c.source.aclose()
        for t in tasks:
            t.cancel()
        await sink.aclose()
    # steady state: the second answer, from 3 s into it to its end
    steady = slice(3 * INPUT_RATE_HZ, len(answer) - INPUT_RATE_HZ)
    raw, cleaned = off.pcm(marks[1])[steady], on.pcm(marks[0])[steady]
    assert _rms(raw) > 1000, "the echo path carried no answer into the mic"
    erle_db = 20 * np.log10(_rms(raw) / max(_rms(cleaned), 1.0))
    assert erle_db >= 25, erle_db
