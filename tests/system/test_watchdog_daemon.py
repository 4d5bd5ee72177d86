"""`hark run` under a (socket-level) systemd: READY, STATUS, and the watchdog kept fed while muted."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.speech import Speech

REPO = Path(__file__).resolve().parents[2]


def test_muted_daemon_keeps_the_watchdog_fed_and_stops_cleanly(
    tmp_path: Path, speech: Speech, models_dir: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "runtime.json").write_text(json.dumps({"muted": True, "volume": 50, "wake_enabled": True}))
    wav = speech.wav(speech.concat([speech.espeak("Hello there")], [0.5, 0.5]), "watchdog-in")
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.2)
    env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "800000", "HARK_MODELS_DIR": str(models_dir)}
    env.pop("OPENAI_API_KEY", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daemon",
            "run",
            "--set",
            f'audio.input="wav:{wav}"',
            "--set",
            f'audio.output="wav:{tmp_path / "out.wav"}"',
            "--set",
            f'paths.state="{state}"',
            "--set",
            'chimes.wake=""',
            # unpaced: a paused WAV has no clock, so a muted daemon waits here until SIGTERM, as on a microphone
            "--set",
            "audio.realtime_pace=false",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while "READY=1" not in "\n".join(messages) and time.monotonic() < deadline:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert any("READY=1" in m for m in messages)
        ready_at = len(messages)
        # Counted, not timed: four pings while muted (no audio frame at all) span two watchdog periods
        # however slowly a loaded machine runs the daemon; a daemon that stopped pinging fails by the deadline.
        deadline = time.monotonic() + 60
        while len([m for m in messages[ready_at:] if "WATCHDOG=1" in m]) < 4:
            assert time.monotonic() < deadline, f"fewer than 4 watchdog pings while muted: {messages}"
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert any("STATUS=muted" in m for m in messages)
        assert proc.poll() is None, "the muted daemon must still be running"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except TimeoutError:
                break
        assert any("STOPPING=1" in m for m in messages), messages[-5:]
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
