"""Living under systemd: sd_notify, the watchdog, journald-friendly logging and signal handlers.

Why hand-written sd_notify: the protocol is one datagram on an AF_UNIX socket, and the usual libraries
(systemd-python, sdnotify) need C headers on the Pi or are unmaintained. Everything here is a no-op when not
run by systemd, so the same code path runs on a desktop, in tests and in the service.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from typing import IO, Any

from daemon.system import tasks

log = logging.getLogger(__name__)

# --- sd_notify ----------------------------------------------------------------------------------------------


def notify(*lines: str) -> bool:
    """Send `lines` (e.g. "READY=1") to $NOTIFY_SOCKET. Returns False when unset or failing; never raises."""
    path = os.environ.get("NOTIFY_SOCKET", "")
    if not path or not lines:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path  # '@' = Linux abstract namespace
    payload = "\n".join(lines).encode("utf-8", "replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(payload, address)
    except OSError as e:
        log.debug("sd_notify to %s failed: %s", path, e)
        return False
    return True


def ready(text: str = "") -> bool:
    """Tell systemd start-up is complete (audio, models and config are up); optional STATUS line."""
    return notify("READY=1", *([f"STATUS={_one_line(text)}"] if text else []))


def status(text: str) -> bool:
    """Free-form status shown by `systemctl status hark`."""
    return notify(f"STATUS={_one_line(text)}")


def stopping(text: str = "") -> bool:
    """Tell systemd a clean shutdown has begun (sent on SIGTERM, before the 10 s stop timeout runs out)."""
    return notify("STOPPING=1", *([f"STATUS={_one_line(text)}"] if text else []))


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- watchdog -----------------------------------------------------------------------------------------------


class Watchdog:
    """WATCHDOG=1 at half of WatchdogSec, but only while the audio path keeps calling `pet()`.

    A timer that pets unconditionally would keep a wedged daemon alive forever; tying the ping to processed
    frames means a stuck capture loop, a blocked event loop or a dead worker all lead to a restart.
    """

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        self.interval_s = _watchdog_interval(env)
        self._petted = False
        self._starved = False
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0

    def pet(self) -> None:
        """Called for every processed audio frame: cheap, thread-safe enough (a bool store)."""
        self._petted = True

    def start(self) -> None:
        """Start the background pinger on the running loop (no-op when systemd set no watchdog)."""
        if not self.enabled or self._task is not None:
            return
        log.info("watchdog on: pinging systemd every %.1f s while audio flows", self.interval_s / 2)
        self._task = tasks.spawn(self._run(), "hark-watchdog")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s / 2)
            self.tick()

    def tick(self) -> bool:
        """One check: ping if petted since the last tick. Returns whether a ping was sent."""
        if self._petted:
            self._petted = False
            if self._starved:
                log.info("audio frames flow again; watchdog pings resumed")
            self._starved = False
            notify("WATCHDOG=1")
            return True
        if not self._starved:
            log.warning(
                "no audio frame processed for %.1f s: withholding the watchdog ping; systemd restarts the "
                "service after %.0f s unless frames resume (check the microphone and `hark devices`)",
                self.interval_s / 2,
                self.interval_s,
            )
        self._starved = True
        return False


def _watchdog_interval(env: dict[str, str]) -> float:
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec:
        return 0.0
    if pid and pid != str(os.getpid()):
        return 0.0  # the watchdog is meant for another process (e.g. a wrapper shell)
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer of microseconds; watchdog off", usec)
        return 0.0
    return value / 1_000_000 if value > 0 else 0.0


# --- logging ------------------------------------------------------------------------------------------------

_SECRET_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{8,}"),
    re.compile(r"(?i)((?:api[_-]?key|password|token)\s*[=:]\s*)['\"]?[^\s'\",;]{4,}"),
)
_JOURNAL_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def redact(text: str) -> str:
    """Replace anything that looks like a credential with a marker; the last line of defence for logs."""
    text = _SECRET_PATTERNS[0].sub("sk-<redacted>", text)
    for pattern in _SECRET_PATTERNS[1:]:
        text = pattern.sub(r"\1<redacted>", text)
    return text


class RedactFilter(logging.Filter):
    """Renders the message with its args and redacts it, so no handler ever sees the raw secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format must not lose the log line
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), None
        return True


class OneLineFormatter(logging.Formatter):
    """One line per event (tracebacks folded with ' | '), journald `<N>` prefixes when under systemd."""

    def __init__(self, journal: bool) -> None:
        fmt = "%(name)s: %(message)s" if journal else "%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s"
        super().__init__(fmt, datefmt="%Y-%m-%d %H:%M:%S")
        self.journal = journal

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))
        text = " | ".join(part for part in text.splitlines() if part.strip())
        if self.journal:
            return f"<{_priority(record.levelno)}>{text}"
        return text


def _priority(levelno: int) -> int:
    for threshold, priority in _JOURNAL_PRIORITY:
        if levelno >= threshold:
            return priority
    return 7


def under_journald(stream: IO[str], env: dict[str, str] | None = None) -> bool:
    """True when `stream` is the journal socket systemd gave us ($JOURNAL_STREAM = "dev:inode")."""
    env = dict(os.environ) if env is None else env
    value = env.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False  # redirected or malformed: a person is reading this, use the readable format
    return (st.st_dev, st.st_ino) == (dev, ino)


def setup_logging(level: str | int = "info", stream: IO[str] | None = None) -> logging.Handler:
    """Configure the root logger once (the CLI calls this; modules only use getLogger(__name__))."""
    stream = sys.stderr if stream is None else stream
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"logging level {level!r}: expected one of debug, info, warning, error")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter(journal=under_journald(stream)))
    handler.addFilter(RedactFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_hark", False)]:
        root.removeHandler(old)
    handler._hark = True  # type: ignore[attr-defined]  # marks ours so a re-setup replaces, not duplicates
    root.addHandler(handler)
    root.setLevel(numeric)
    return handler


# --- signals ------------------------------------------------------------------------------------------------

Callback = Callable[[], "Coroutine[Any, Any, Any] | None"]


def install_signal_handlers(
    loop: asyncio.AbstractEventLoop, on_term: Callback, on_hup: Callback | None = None
) -> set[asyncio.Task[Any]]:
    """SIGTERM/SIGINT → on_term, SIGHUP → on_hup (ignored with a log line when None).

    Callbacks may be plain functions or coroutine functions (run as tasks kept in the returned set, so
    they are not garbage-collected mid-flight).
    """
    tasks: set[asyncio.Task[Any]] = set()

    def run(name: str, callback: Callback) -> None:
        log.info("received %s", name)
        result = callback()
        if inspect.isawaitable(result):
            task = loop.create_task(result, name=f"hark-{name.lower()}")
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def ignore_hup() -> None:
        log.info("received SIGHUP: reload is not supported here; restart with `systemctl restart hark`")

    loop.add_signal_handler(signal.SIGTERM, run, "SIGTERM", on_term)
    loop.add_signal_handler(signal.SIGINT, run, "SIGINT", on_term)
    if on_hup is None:
        loop.add_signal_handler(signal.SIGHUP, ignore_hup)
    else:
        loop.add_signal_handler(signal.SIGHUP, run, "SIGHUP", on_hup)
    return tasks
