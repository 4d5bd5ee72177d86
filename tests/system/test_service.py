"""daemon.system.service against a real AF_UNIX datagram socket (as systemd listens), real logging, real signals."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from daemon.system import service


class NotifySocket:
    """A stand-in for systemd's notify socket: collects every datagram."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)

    def drain(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out

    async def wait_for(self, text: str, timeout_s: float) -> list[str]:
        seen: list[str] = []

        async def poll() -> None:
            while not any(text in m for m in seen):
                seen.extend(self.drain())
                await asyncio.sleep(0.01)

        await asyncio.wait_for(poll(), timeout_s)
        return seen


@pytest.fixture
def notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    path = str(tmp_path / "notify")
    ns = NotifySocket(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield ns
    ns.sock.close()


def test_ready_status_stopping_reach_the_socket(notify_socket: NotifySocket) -> None:
    assert service.ready("listening for hey jarvis")
    assert service.status("answering\nfrom the cloud")
    assert service.stopping()
    assert notify_socket.drain() == [
        "READY=1\nSTATUS=listening for hey jarvis",
        "STATUS=answering from the cloud",
        "STOPPING=1",
    ]


def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"@hark-test-{os.getpid()}"
    ns = NotifySocket(name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", name)
        assert service.notify("READY=1")
        assert ns.drain() == ["READY=1"]
    finally:
        ns.sock.close()


def test_notify_is_a_quiet_no_op_without_systemd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert service.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))  # systemd went away: must not raise
    assert service.status("x") is False


async def test_watchdog_pings_only_while_frames_flow(
    notify_socket: NotifySocket, caplog: pytest.LogCaptureFixture
) -> None:
    """Counted, not timed: the pinger's own "withholding" warning marks the tick that saw no frame."""
    caplog.set_level(logging.INFO, logger="daemon.system.service")
    dog = service.Watchdog({"WATCHDOG_USEC": "200000"})  # 0.2 s → a ping check every 0.1 s
    assert dog.enabled and dog.interval_s == pytest.approx(0.2)
    dog.start()
    stuck = asyncio.Event()

    async def audio_loop() -> None:
        while not stuck.is_set():
            dog.pet()
            await asyncio.sleep(0.02)

    frames = asyncio.create_task(audio_loop())
    try:
        pings: list[str] = []
        while len(pings) < 3:  # frames flow → pings, however slowly a loaded machine runs the ticks
            pings += [m for m in await notify_socket.wait_for("WATCHDOG=1", 10) if m == "WATCHDOG=1"]
        caplog.clear()
        stuck.set()  # the audio loop is stuck: no more pet()
        await frames
        await _until(lambda: "withholding the watchdog ping" in caplog.text, 10)
        notify_socket.drain()  # every ping sent before that tick is in the socket by now
        assert dog.tick() is False, "no frame since the withheld tick, yet a ping"
        assert notify_socket.drain() == [], "pinged with no frame processed: systemd would never restart us"
        dog.pet()  # frames resume → pings resume
        await notify_socket.wait_for("WATCHDOG=1", 10)
        await _until(lambda: "watchdog pings resumed" in caplog.text, 10)
    finally:
        stuck.set()
        await frames
        await dog.stop()


async def _until(cond: Callable[[], bool], limit_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_watchdog_off_without_systemd_or_for_another_pid() -> None:
    assert not service.Watchdog({}).enabled
    assert not service.Watchdog({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}).enabled
    assert not service.Watchdog({"WATCHDOG_USEC": "soon"}).enabled
    assert service.Watchdog({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}).interval_s == 30


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _emit_all(log: logging.Logger) -> None:
    log.debug("frame %d", 7)
    log.info("listening")
    log.warning("device %s slow", "hw:1")
    log.error("cloud refused")


def test_journald_prefixes_under_systemd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_root_logger: None
) -> None:
    with (tmp_path / "journal").open("w+") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        service.setup_logging("debug", stream=stream)
        _emit_all(logging.getLogger("hark.test"))
        stream.seek(0)
        lines = stream.read().splitlines()
    assert lines == [
        "<7>hark.test: frame 7",
        "<6>hark.test: listening",
        "<4>hark.test: device hw:1 slow",
        "<3>hark.test: cloud refused",
    ]


def test_readable_format_on_a_terminal(monkeypatch: pytest.MonkeyPatch, restore_root_logger: None) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # inherited from a service, but stderr was redirected
    stream = io.StringIO()
    service.setup_logging("info", stream=stream)
    _emit_all(logging.getLogger("hark.test"))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # debug is below "info"
    assert lines[0].endswith("INFO    hark.test: listening") and lines[0][:4].isdigit()
    assert "<" not in lines[2] and "ERROR" in lines[2]


def test_secrets_are_redacted_and_tracebacks_stay_on_one_line(restore_root_logger: None) -> None:
    stream = io.StringIO()
    service.setup_logging("info", stream=stream)
    log = logging.getLogger("hark.test")
    key = "sk-proj-AbCdEf0123456789xyz"
    log.info("connecting with key %s", key)
    log.warning("header Authorization: Bearer abcdefghijklmnop1234")
    try:
        raise RuntimeError(f"bad key {key}")
    except RuntimeError:
        log.exception("cloud failed")
    text = stream.getvalue()
    assert key not in text and "abcdefghijklmnop1234" not in text
    assert "sk-<redacted>" in text
    assert len(text.splitlines()) == 3  # the traceback is folded into its event's line
    assert "RuntimeError" in text.splitlines()[2]


def test_setup_logging_rejects_unknown_level() -> None:
    with pytest.raises(ValueError, match="expected one of debug, info, warning, error"):
        service.setup_logging("loud")


async def test_signal_handlers_call_back() -> None:
    loop = asyncio.get_running_loop()
    reloaded, terminated = asyncio.Event(), asyncio.Event()

    async def on_hup() -> None:  # coroutine callbacks run as tasks
        reloaded.set()

    tasks = service.install_signal_handlers(loop, terminated.set, on_hup)
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.wait_for(reloaded.wait(), 5)
        assert not terminated.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(terminated.wait(), 5)
        assert not tasks  # finished tasks are dropped
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
