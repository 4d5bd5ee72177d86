#!/usr/bin/env python3
"""Benchmark start-up: process start → READY=1 of `hark run` on the PulseAudio rig, with a breakdown.

    .venv/bin/python scripts/bench_startup.py [--runs 5] [--repo DIR ...]

Each run starts `python -m daemon run` (microphone and speaker on a private headless PulseAudio,
scripts/pulse-rig) with a socket-level NOTIFY_SOCKET, as systemd would, and times from spawning the process
to READY=1, to the first audio frame processed (the first WATCHDOG=1 of a 100 ms watchdog) and to the log
lines that mark the stages (wake models loaded, Piper voice loaded). Imports are
timed in their own child (`import daemon.app` after the interpreter is up). With several `--repo` (e.g. the
main checkout and this branch) the runs alternate A B A B, so a busy neighbour slows both alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 2.0
MARKERS = {"wake": "wake models loaded", "voice": "Piper voice", "listening": "listening for the wake word"}


def rig_env(rig_dir: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(ROOT / "scripts" / "pulse-rig"), "start", str(rig_dir)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    env = {}
    for line in out.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export ") :].partition("=")
            env[key] = value
    return env


def import_s(repo: Path, env: dict[str, str]) -> float:
    code = "import time; t = time.perf_counter(); import daemon.app; print(time.perf_counter() - t)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo,
        env={**env, "PYTHONPATH": str(repo)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def one_run(repo: Path, env: dict[str, str], tmp: Path) -> dict[str, float]:
    """Spawn `hark run`, time READY=1 and the stage log lines, wait for the voice, then SIGTERM."""
    sock_path = tmp / "notify.sock"
    sock_path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(0.05)
    # A 100 ms watchdog: its first WATCHDOG=1 (≤ 50 ms after the first processed audio frame) marks capture up.
    child_env = {**env, "PYTHONPATH": str(repo), "NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "100000"}
    child_env.pop("OPENAI_API_KEY", None)
    cmd = [
        sys.executable,
        "-m",
        "daemon",
        "run",
        "--set",
        f'paths.state="{tmp / "state"}"',
        "--set",
        'mqtt.host=""',
        "--set",
        "metrics.port=0",
    ]
    marks: dict[str, float] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=repo, env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def read_log() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            now = time.perf_counter() - t0
            for name, text in MARKERS.items():
                if text in line and name not in marks:
                    marks[name] = now

    reader = threading.Thread(target=read_log, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not {"ready", "voice", "frames"} <= marks.keys():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{repo}: no READY=1 / voice within 60 s (exit {proc.poll()}); marks {marks}")
            try:
                message = sock.recv(4096)
            except TimeoutError:
                continue
            for key, text in (("ready", b"READY=1"), ("frames", b"WATCHDOG=1")):
                if text in message and key not in marks:
                    marks[key] = time.perf_counter() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        reader.join(timeout=5)
        sock.close()
    return marks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--repo", type=Path, action="append", help="checkout(s) to compare (default: this one)")
    args = parser.parse_args()
    repos = [r.resolve() for r in (args.repo or [ROOT])]
    if shutil.which("pulseaudio") is None:
        parser.error("pulseaudio is not installed: apt-get install pulseaudio pulseaudio-utils libasound2-plugins")
    base = Path(tempfile.mkdtemp(prefix="hark-bstart-"))
    env = {**os.environ, **rig_env(base / "rig")}
    env.setdefault("HARK_MODELS_DIR", str(ROOT / "models"))
    results: dict[Path, list[dict[str, float]]] = {r: [] for r in repos}
    try:
        for run in range(args.runs):
            for repo in repos if run % 2 == 0 else list(reversed(repos)):
                marks = one_run(repo, env, base)
                marks["imports"] = import_s(repo, env)
                results[repo].append(marks)
            print(f"  run {run + 1}/{args.runs} done", file=sys.stderr, flush=True)
    finally:
        subprocess.run(
            [str(ROOT / "scripts" / "pulse-rig"), "stop", str(base / "rig")],
            capture_output=True,
            timeout=30,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)
    load = os.getloadavg()[0]
    print(
        f"\n{args.runs} runs per checkout, interleaved, medians (min–max); load average at the end {load:.1f} "
        f"on {os.cpu_count()} cores; times from spawning `python -m daemon run`\n"
    )
    print(
        "| checkout | `import daemon.app` | wake models loaded | READY=1 | audio frames flowing | Piper voice loaded "
        "| target |"
    )
    print("|---|---|---|---|---|---|---|")
    for repo, runs in results.items():

        def cell(key: str, runs: list[dict[str, float]] = runs) -> str:
            vals = [r[key] for r in runs if key in r]
            if not vals:
                return "–"
            return f"{statistics.median(vals):.2f} s ({min(vals):.2f}–{max(vals):.2f})"

        ready = statistics.median(r["ready"] for r in runs)
        verdict = f"READY ≤ {TARGET_S:.1f} s: {'met' if ready <= TARGET_S else 'MISSED'}"
        print(
            f"| {repo} | {cell('imports')} | {cell('wake')} | **{cell('ready')}** | {cell('frames')} | {cell('voice')} "
            f"| {verdict} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
