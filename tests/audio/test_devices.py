"""Device discovery and resolution against real PortAudio devices (the PulseAudio rig's ALSA pcms)."""

from __future__ import annotations

import pytest

from daemon.audio.devices import DeviceError, format_devices, list_devices, resolve
from tests.fixtures_audio import PulseRig


def test_list_devices_shows_the_rig(pulse_rig: PulseRig) -> None:
    devices = {d.name: d for d in list_devices()}
    assert "hark_mic" in devices, f"rig devices missing from {sorted(devices)}"
    mic = devices["hark_mic"]
    assert mic.max_input_channels >= 1
    assert mic.supports_16k_input
    assert mic.default_rate_hz > 0
    assert "default" in devices


def test_resolve_default_index_and_substring(pulse_rig: PulseRig) -> None:
    mic = resolve("hark_mic", "input")
    assert mic.name == "hark_mic"
    assert resolve(str(mic.index), "input") == mic
    assert resolve("HARK_M", "input") == mic  # case-insensitive substring
    assert resolve("default", "input").max_input_channels >= 1
    assert resolve("hark_speaker", "output").max_output_channels >= 1


def test_unknown_name_lists_the_devices_that_exist(pulse_rig: PulseRig) -> None:
    with pytest.raises(DeviceError) as err:
        resolve("ReSpeaker 4-Mic", "input")
    msg = str(err.value)
    assert "audio.input = 'ReSpeaker 4-Mic'" in msg
    assert "no input device name contains" in msg
    assert "hark_mic" in msg and "available input devices" in msg


def test_bad_index_and_ambiguous_name_are_explained(pulse_rig: PulseRig) -> None:
    with pytest.raises(DeviceError, match=r"device 999 does not exist; available output devices"):
        resolve("999", "output")
    with pytest.raises(DeviceError, match=r"devices match .*hark_mic.*hark_speaker.*use a longer name"):
        resolve("hark_", "input")


def test_format_devices_is_readable(pulse_rig: PulseRig) -> None:
    text = format_devices()
    assert text.startswith("Input devices (audio.input):")
    assert "Output devices (audio.output):" in text
    assert "hark_mic" in text and "16 kHz native" in text


def test_a_late_callback_does_not_move_the_stream_clock() -> None:
    """PortAudio stamps the block on its own clock; our clock is read when the callback runs. A callback that
    runs 40 ms late still reports when its block really plays."""
    from daemon.audio.devices import StreamClock

    clock = StreamClock("output")
    pa_minus_mono = 1000.0  # PortAudio's clock is another clock altogether
    for n in range(50):
        now = 10.0 + n * 0.02
        late = 0.04 if n == 30 else 0.0
        stamped = now - late + pa_minus_mono  # PortAudio stamped the block before the callback was delayed
        times = {"current_time": stamped, "output_buffer_dac_time": stamped + 0.05}
        played = clock.block_time(times, now)
        assert abs(played - (now - late + 0.05)) < 1e-3, (n, played)
    assert clock.block_time(None, 20.0) == 20.0  # no times from the host API: the callback time
    assert StreamClock("input").block_time({"current_time": 5.0, "input_buffer_adc_time": 0.0}, 7.0) == 7.0
