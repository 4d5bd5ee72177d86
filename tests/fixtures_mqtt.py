"""Fixtures for the mqtt rig: a real Mosquitto per test on a free port, a real paho probe client, certs.

Why real parts: the behaviour users notice (retained state after a broker restart, the last will when the
daemon dies, TLS and passwords) lives in the broker and in paho, so a fake would test nothing that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from daemon.config import loader as config_file
from daemon.config import settings as config

AUTH_USER, AUTH_PASSWORD = "hark", "s3cret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.01)
    raise TimeoutError(f"mosquitto did not listen on 127.0.0.1:{port} within {timeout_s} s")


@dataclass
class Broker:
    """One mosquitto process; `stop()`/`start()`/`restart()` keep the same port (no persistence)."""

    workdir: Path
    conf: str
    ports: list[int]
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self.ports[0]

    def start(self) -> None:
        path = self.workdir / "mosquitto.conf"
        path.write_text(self.conf)
        log = (self.workdir / "mosquitto.log").open("ab")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(path)], stdout=log, stderr=log)
        log.close()
        for port in self.ports:
            _wait_port(port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return (self.workdir / "mosquitto.log").read_text(errors="replace")


def _broker(tmp: Path, listeners: str, ports: list[int]) -> Iterator[Broker]:
    conf = f"persistence false\nuser root\nper_listener_settings true\n{listeners}"
    broker = Broker(tmp, conf, ports)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Broker]:
    """Anonymous broker on 127.0.0.1:<free port>."""
    port = free_port()
    yield from _broker(tmp_path, f"listener {port} 127.0.0.1\nallow_anonymous true\n", [port])


@pytest.fixture
def mosquitto_auth(tmp_path: Path) -> Iterator[Broker]:
    """Broker that requires AUTH_USER / AUTH_PASSWORD."""
    pw = tmp_path / "passwd"
    pw.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(pw), AUTH_USER, AUTH_PASSWORD], check=True, timeout=10)
    port = free_port()
    listener = f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {pw}\n"
    yield from _broker(tmp_path, listener, [port])


@dataclass(frozen=True)
class Certs:
    ca: Path
    client_cert: Path
    client_key: Path
    server_cert: Path
    server_key: Path
    other_ca: Path
    """A CA that signed nothing here: trusting it must fail verification."""
    misnamed_cert: Path
    misnamed_key: Path
    """Signed by `ca` but for another host name: only tls_insecure accepts it."""


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _issue(d: Path, name: str, subject: str, ext: str) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d)  # fmt: skip
    (d / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-out", f"{name}.crt", "-extfile", f"{name}.ext", cwd=d)  # fmt: skip


@pytest.fixture(scope="session")
def mqtt_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """A throwaway CA, a server cert for 127.0.0.1/localhost and a client cert, made with openssl."""
    d = tmp_path_factory.mktemp("mqtt-certs")
    for ca in ("ca", "other_ca"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2", "-subj", f"/CN=hark test {ca}",
                 cwd=d)  # fmt: skip
    _issue(d, "server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _issue(d, "client", "/CN=hark-client", "extendedKeyUsage=clientAuth\n")
    _issue(d, "misnamed", "/CN=elsewhere.example", "subjectAltName=DNS:elsewhere.example\n")
    return Certs(d / "ca.crt", d / "client.crt", d / "client.key", d / "server.crt", d / "server.key",
                 d / "other_ca.crt", d / "misnamed.crt", d / "misnamed.key")  # fmt: skip


@pytest.fixture
def mosquitto_tls(tmp_path: Path, mqtt_certs: Certs) -> Iterator[Broker]:
    """TLS broker: ports[0] = TLS + password; [1] = mutual TLS (client cert); [2] = cert for another name."""
    c = mqtt_certs
    pw = tmp_path / "passwd"
    pw.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(pw), AUTH_USER, AUTH_PASSWORD], check=True, timeout=10)
    tls = f"cafile {c.ca}\ncertfile {c.server_cert}\nkeyfile {c.server_key}\n"
    misnamed = f"cafile {c.ca}\ncertfile {c.misnamed_cert}\nkeyfile {c.misnamed_key}\n"
    p1, p2, p3 = free_port(), free_port(), free_port()
    listeners = (
        f"listener {p1} 127.0.0.1\n{tls}allow_anonymous false\npassword_file {pw}\n"
        f"listener {p2} 127.0.0.1\n{tls}require_certificate true\nallow_anonymous true\n"
        f"listener {p3} 127.0.0.1\n{misnamed}allow_anonymous true\n"
    )
    yield from _broker(tmp_path, listeners, [p1, p2, p3])


# --- observing and driving the broker ---------------------------------------------------------------------


@dataclass(frozen=True)
class Msg:
    topic: str
    payload: bytes
    retain: bool

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


@dataclass
class MqttProbe:
    """A real paho client for tests: subscribe, publish, and wait (bounded) for what the bridge sent."""

    port: int
    host: str = "127.0.0.1"
    tls: dict[str, Any] | None = None
    auth: tuple[str, str] | None = None
    messages: list[Msg] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        self._topics: list[str] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{id(self)}")
        if self.tls:
            self.client.tls_set(**self.tls)
        if self.auth:
            self.client.username_pw_set(*self.auth)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_connect = self._on_connect
        self.client.reconnect_delay_set(1, 1)
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        if not self._connected.wait(5):
            raise TimeoutError(f"probe could not connect to {self.host}:{self.port}")

    def _on_connect(self, client: mqtt.Client, *_a: Any) -> None:
        for t in self._topics:  # re-subscribe after a broker restart
            client.subscribe(t, 1)
        self._connected.set()

    def _on_message(self, _c: Any, _u: Any, m: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Msg(m.topic, bytes(m.payload), bool(m.retain)))

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self._topics.append(topic)
        self.client.subscribe(topic, 1)
        if not self._subscribed.wait(5):
            raise TimeoutError(f"no SUBACK for {topic}")

    def publish(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def on(self, topic: str) -> list[Msg]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    async def wait_for(self, topic: str, pred: Callable[[Msg], bool] = lambda m: True, timeout_s: float = 10.0) -> Msg:
        async def poll() -> Msg:
            while True:
                found = [m for m in self.on(topic) if pred(m)]
                if found:
                    return found[-1]
                await asyncio.sleep(0.02)

        try:
            return await asyncio.wait_for(poll(), timeout_s)
        except asyncio.TimeoutError:
            seen = [m.text[:80] for m in self.on(topic)]
            raise AssertionError(f"nothing matching on {topic} within {timeout_s} s; saw {seen}") from None

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def mqtt_probe() -> Iterator[Callable[..., MqttProbe]]:
    """Factory: mqtt_probe(broker.port, tls=...) → connected probe, closed at teardown."""
    made: list[MqttProbe] = []

    def make(port: int, **kw: Any) -> MqttProbe:
        probe = MqttProbe(port, **kw)
        made.append(probe)
        return probe

    yield make
    for p in made:
        p.close()


# --- the bridge's side ------------------------------------------------------------------------------------


class RecordingController:
    """The assistant's side of the bridge, recording each call (our own interface, not a mocked library)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def listen(self) -> None:
        self.calls.append(("listen", ()))

    def stop(self) -> None:
        self.calls.append(("stop", ()))

    def say(self, text: str, priority: bool) -> None:
        self.calls.append(("say", (text, priority)))

    def ask(self, text: str) -> None:
        self.calls.append(("ask", (text,)))

    def set_mute(self, on: bool) -> None:
        self.calls.append(("set_mute", (on,)))

    def set_volume(self, percent: int) -> None:
        self.calls.append(("set_volume", (percent,)))

    def set_wake(self, on: bool) -> None:
        self.calls.append(("set_wake", (on,)))

    async def wait_for(self, call: tuple[str, tuple[Any, ...]], timeout_s: float = 10.0) -> None:
        async def poll() -> None:
            while True:
                if call in self.calls:
                    return
                await asyncio.sleep(0.02)

        try:
            await asyncio.wait_for(poll(), timeout_s)
        except asyncio.TimeoutError:
            raise AssertionError(f"controller never got {call}; got {self.calls}") from None


def mqtt_settings(port: int, device_id: str = "testbox", **mqtt: Any) -> config.Settings:
    """Validated settings for a bridge talking to 127.0.0.1:port (tools= goes to the top level)."""
    tools = mqtt.pop("tools", [])
    raw = {"mqtt": {"host": "127.0.0.1", "port": port, "device_id": device_id, **mqtt}, "tools": tools}
    raw["mqtt"].setdefault("reconnect_min_s", 1.0)
    raw["mqtt"].setdefault("reconnect_max_s", 2.0)
    return config_file.from_dict(raw)


@pytest.fixture
async def mqtt_bridge() -> AsyncIterator[Callable[..., Any]]:
    """Factory: mqtt_bridge(settings, password="", wake_models=[...]) → (bridge, controller), started."""
    from daemon.mqtt.bridge import MqttBridge

    bridges: list[MqttBridge] = []

    def make(
        settings: config.Settings, password: str = "", wake_models: list[str] | None = None
    ) -> tuple[MqttBridge, RecordingController]:
        ctl = RecordingController()
        models = wake_models or ["hey_jarvis", "alexa"]
        bridge = MqttBridge(settings, password, ctl, asyncio.get_running_loop(), models)
        bridge.start()
        bridges.append(bridge)
        return bridge, ctl

    yield make
    for b in bridges:
        await b.stop()
