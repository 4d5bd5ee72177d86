"""The MQTT bridge: state → retained topics, commands → assistant calls, tools as home-automation actions.

Why: paho's own thread (`loop_start`) reconnects with backoff, so a dead broker never blocks the speaker.
Incoming messages cross to the event loop with `call_soon_threadsafe`; the `Controller` only ever sees
validated commands there. Nothing is queued while offline: stale retained state must not overwrite the
snapshot that every (re)connect publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from daemon import __version__
from daemon.config.settings import ConfigError, MqttSettings, Settings, ToolSettings
from daemon.mqtt import commands, discovery

log = logging.getLogger(__name__)

GROUP_TOPIC = "hark/all"
"""Commands under `hark/all/cmd/...` reach every speaker (whole-house announcements)."""
MAX_QUEUED_MESSAGES = 200
"""Bound on QoS>0 messages paho keeps in flight; past it, events are dropped rather than queued."""
_RETRY_SNAPSHOT_S = 1.0


class Controller(Protocol):
    """Implemented by the assistant; called on the event loop thread with validated values only."""

    def listen(self) -> None: ...
    def stop(self) -> None: ...
    def say(self, text: str, priority: bool) -> None: ...
    def ask(self, text: str) -> None: ...
    def set_mute(self, on: bool) -> None: ...
    def set_volume(self, percent: int) -> None: ...
    def set_wake(self, on: bool) -> None: ...


def _on_off(on: bool) -> str:
    return "ON" if on else "OFF"


def make_client(m: MqttSettings, client_id: str, password: str) -> mqtt.Client:
    """A configured paho client (TLS, credentials, backoff). Raises ConfigError for unusable TLS files."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    if m.username:
        client.username_pw_set(m.username, password or None)
    elif password:
        log.warning("HARK_MQTT_PASSWORD is set but mqtt.username is empty: the password is not sent")
    if m.tls:
        for name, path in (("ca_file", m.ca_file), ("cert_file", m.cert_file), ("key_file", m.key_file)):
            if path and not Path(path).is_file():
                raise ConfigError(f"mqtt.{name} = {path!r}: file not found (expected a PEM file)")
        if bool(m.cert_file) != bool(m.key_file):
            raise ConfigError("mqtt.cert_file, mqtt.key_file: set both for a client certificate, or neither")
        ca, cert, key = m.ca_file or None, m.cert_file or None, m.key_file or None
        try:
            client.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
        except (ssl.SSLError, OSError, ValueError) as e:
            raise ConfigError(f"mqtt TLS files unusable: {e} (check mqtt.ca_file/cert_file/key_file)") from e
        client.tls_insecure_set(m.tls_insecure)
    elif m.ca_file or m.cert_file or m.key_file:
        log.warning("mqtt.ca_file/cert_file/key_file are set but mqtt.tls = false: connecting without TLS")
    client.reconnect_delay_set(max(1, math.ceil(m.reconnect_min_s)), max(1, math.ceil(m.reconnect_max_s)))
    client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
    return client


class MqttBridge:
    """Connects the speaker to a broker. Create, `start()`, publish from the loop, `await stop()`."""

    def __init__(
        self,
        settings: Settings,
        password: str,
        controller: Controller,
        loop: asyncio.AbstractEventLoop,
        wake_models: list[str],
    ) -> None:
        self._s = settings.mqtt
        self._controller = controller
        self._loop = loop
        self._discovery = discovery.build(
            settings.device_id,
            settings.base_topic,
            self._s.discovery_prefix,
            __version__,
            wake_models,
            transcripts=self._s.publish_transcripts,
            commands=settings.commands.local != "off" and bool(settings.commands.intents),
        )
        self.base = settings.base_topic
        self._where = f"{self._s.host}:{self._s.port}"
        self._cmd_prefixes = (f"{self.base}/cmd/", f"{GROUP_TOPIC}/cmd/")
        self._ha_status = f"{self._s.discovery_prefix}/status"
        volume, wake = str(settings.audio.volume), _on_off(settings.wake.enabled)
        self._snapshot = {"state": "idle", "mute": "OFF", "volume": volume, "wake": wake}
        self._waiters: dict[str, list[tuple[str, asyncio.Future[str]]]] = {}
        self._response_topics = {t.response_topic for t in settings.tools if t.response_topic}
        self._retry_handle: asyncio.TimerHandle | None = None
        self.arbitration_topic = f"hark/arbitration/{self._s.arbitration_group}" if self._s.arbitration_ms else ""
        self.on_claim: Callable[[bytes], None] = lambda _payload: None
        """Set by daemon.mqtt.link: every message on `arbitration_topic` (loop thread)."""
        self.dropped_events = 0
        self.client_id = self._s.client_id or f"hark-{settings.device_id}"
        self._client = make_client(self._s, self.client_id, password)
        self._client.will_set(f"{self.base}/availability", "offline", qos=self._s.qos, retain=True)
        c = self._client
        c.on_connect, c.on_disconnect, c.on_message = self._on_connect, self._on_disconnect, self._on_message

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting in paho's thread; returns at once even if the broker is down."""
        log.info("MQTT: connecting to %s as %s (base topic %s)", self._where, self.client_id, self.base)
        self._client.connect_async(self._s.host, self._s.port, keepalive=self._s.keepalive_s)
        self._client.loop_start()

    async def stop(self, timeout_s: float = 2.0) -> None:
        """Publish `offline`, disconnect, then stop paho's thread (that order avoids paho's 1 s stall)."""
        if self._retry_handle:
            self._retry_handle.cancel()
        if self._client.is_connected():
            info = self._client.publish(f"{self.base}/availability", "offline", self._s.qos, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # connection lost meanwhile: the will says it
                await asyncio.to_thread(info.wait_for_publish, timeout_s)
        self._client.disconnect()
        await asyncio.wait_for(asyncio.to_thread(self._client.loop_stop), timeout_s)
        for _, future in (w for waiters in self._waiters.values() for w in waiters):
            future.cancel()

    @property
    def connected(self) -> bool:
        return self._client.is_connected()

    # --- publishing (loop thread) -------------------------------------------------------------------------

    def publish_state(self, state: str) -> None:
        if state not in discovery.STATES:
            raise ValueError(f"unknown state {state!r}; expected one of {', '.join(discovery.STATES)}")
        self._retained("state", state)

    def publish_mute(self, on: bool) -> None:
        self._retained("mute", _on_off(on))

    def publish_wake(self, on: bool) -> None:
        self._retained("wake", _on_off(on))

    def publish_volume(self, percent: int) -> None:
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ValueError(f"volume {percent!r} out of range; expected an int from 0 to 100")
        self._retained("volume", str(percent))

    def publish_last_transcript(self, text: str) -> None:
        """Retained plain text; only when mqtt.publish_transcripts is on (what was said is private)."""
        if self._s.publish_transcripts:
            self._retained("last_transcript", text)

    def publish_last_cost(self, usd: float) -> None:
        if not math.isfinite(usd) or usd < 0:
            raise ValueError(f"cost {usd!r} is not a valid amount; expected a USD value >= 0")
        self._retained("last_cost", f"{usd:.6f}")

    def publish_last_command(self, data: dict[str, Any]) -> None:
        """Retained JSON {intent, slots, confidence, ms} of the last command understood on the device."""
        self._retained("last_command", json.dumps(data, default=str, separators=(",", ":")))

    def publish_event(self, name: str, data: dict[str, Any]) -> None:
        """JSON {"event": name, ...data} on <base>/event, not retained; dropped when offline or queue full."""
        if name == "transcript" and not self._s.publish_transcripts:
            return
        body = {"event": name, **{k: v for k, v in data.items() if k != "event"}}
        payload = json.dumps(body, default=str, separators=(",", ":"))
        if not self._publish(f"{self.base}/event", payload, retain=False):
            self.dropped_events += 1
            log.debug("MQTT: event %s dropped (offline or queue full; %d so far)", name, self.dropped_events)

    def _retained(self, key: str, value: str) -> None:
        self._snapshot[key] = value
        if not self._publish(f"{self.base}/{key}", value, retain=True) and self._client.is_connected():
            self._schedule_snapshot()  # queue full: resend the whole snapshot a little later

    def publish_claim(self, payload: str) -> bool:
        """A wake-word claim on the group's arbitration topic (QoS 0, not retained); False if not connected."""
        if not self.arbitration_topic or not self._client.is_connected():
            return False
        return self._client.publish(self.arbitration_topic, payload, 0).rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def _publish(self, topic: str, payload: str | bytes, retain: bool) -> bool:
        if not self._client.is_connected():
            return False
        info = self._client.publish(topic, payload, self._s.qos, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def _schedule_snapshot(self) -> None:
        if self._retry_handle is None or self._retry_handle.cancelled():
            self._retry_handle = self._loop.call_later(_RETRY_SNAPSHOT_S, self._publish_snapshot)

    def _publish_snapshot(self) -> None:
        """On every (re)connect: availability, the current retained values, then discovery."""
        self._retry_handle = None
        if not self._client.is_connected():
            return
        ok = self._publish(f"{self.base}/availability", "online", retain=True)
        for key, value in list(self._snapshot.items()):
            ok = self._publish(f"{self.base}/{key}", value, retain=True) and ok
        if self._s.discovery:
            ok = self._publish_discovery() and ok
        if not ok:
            log.warning("MQTT: publish queue full (%d messages); retrying the snapshot", MAX_QUEUED_MESSAGES)
            self._schedule_snapshot()

    def _publish_discovery(self) -> bool:
        return self._publish(self._discovery.topic, self._discovery.encode(), retain=True)

    # --- paho callbacks (paho's thread) --------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT: broker %s refused us: %s%s", self._where, reason, _auth_hint(str(reason)))
            return
        log.info("MQTT: connected to %s", self._where)
        topics = [f"{self.base}/cmd/#", f"{GROUP_TOPIC}/cmd/#", *sorted(self._response_topics)]
        if self._s.discovery:
            topics.append(self._ha_status)
        subscriptions = [(t, self._s.qos) for t in topics]
        if self.arbitration_topic:
            subscriptions.append((self.arbitration_topic, 0))  # a late claim is worthless: QoS 0
        client.subscribe(subscriptions)
        self._to_loop(self._publish_snapshot)

    def _on_disconnect(self, _c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT: lost broker %s (%s); paho reconnects with backoff", self._where, reason)

    def _on_message(self, _c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        self._to_loop(self._handle_message, msg.topic, bytes(msg.payload), bool(msg.retain))

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed during shutdown: nothing left to deliver to
            log.debug("MQTT: event loop closed; dropped %s", getattr(fn, "__name__", fn))

    # --- incoming (loop thread) ---------------------------------------------------------------------------

    def _handle_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic == self.arbitration_topic:
            if not retained:  # a retained claim is some earlier wake word's
                self.on_claim(payload)
            return
        if topic in self._waiters or topic in self._response_topics:
            if not retained:  # a retained reply is stale: it answers some earlier call
                self._resolve_tool_reply(topic, payload)
            return
        if topic == self._ha_status:
            if payload.strip() == b"online" and self._s.discovery:
                log.info("MQTT: Home Assistant came online; re-publishing discovery")
                self._publish_discovery()
            return
        name = next((topic[len(p) :] for p in self._cmd_prefixes if topic.startswith(p)), None)
        if name is not None:
            self._handle_command(topic, name, payload, retained)

    def _handle_command(self, topic: str, name: str, payload: bytes, retained: bool) -> None:
        if retained and name in commands.ONE_SHOT:
            self._bad_command(topic, "retained message ignored: publish one-shot commands without retain")
            return
        try:
            cmd = commands.parse(name, payload, self._s.max_payload_bytes)
        except commands.CommandError as e:
            self._bad_command(topic, e.problem)
            return
        log.info("MQTT: command %s from %s", cmd, topic)
        try:
            self._dispatch(cmd)
        except Exception as e:  # the assistant's bug must not kill the bridge; say what failed
            log.exception("MQTT: command %s from %s failed in the assistant", cmd, topic)
            self.publish_event("error", {"code": "command_failed", "topic": topic, "message": str(e)})

    def _bad_command(self, topic: str, problem: str) -> None:
        log.warning("MQTT: ignored command on %s: %s", topic, problem)
        self.publish_event("error", {"code": "bad_command", "topic": topic, "message": f"{topic}: {problem}"})

    def _dispatch(self, cmd: commands.Command) -> None:
        c = self._controller
        match cmd:
            case commands.Listen():
                c.listen()
            case commands.Stop():
                c.stop()
            case commands.Say(text, priority):
                c.say(text, priority)
            case commands.Ask(text):
                c.ask(text)
            case commands.Mute(on):
                c.set_mute(on)
            case commands.Volume(percent):
                c.set_volume(percent)
            case commands.Wake(on):
                c.set_wake(on)

    # --- tools as actions ---------------------------------------------------------------------------------

    async def call_tool(self, tool: ToolSettings, call_id: str, arguments: str) -> str:
        """Publish the model's function call; return the reply (or an {"ok": ...} object) as the output."""
        if not tool.mqtt_topic:
            return _tool_error(f"tool {tool.name} has no mqtt_topic configured")
        try:
            args: Any = json.loads(arguments)
        except ValueError:
            args = arguments
        body = json.dumps({"call_id": call_id, "name": tool.name, "arguments": args})
        reply: asyncio.Future[str] = self._loop.create_future()
        waiters = self._waiters.setdefault(tool.response_topic, []) if tool.response_topic else []
        waiters.append((call_id, reply))  # registered before publishing: a fast reply must not be missed
        if tool.response_topic and tool.response_topic not in self._response_topics:
            self._response_topics = self._response_topics | {tool.response_topic}  # paho's thread reads it
            self._client.subscribe(tool.response_topic, self._s.qos)
        try:
            if not self._publish(tool.mqtt_topic, body, retain=False):
                return _tool_error(f"MQTT broker {self._where} not connected; {tool.mqtt_topic} not sent")
            log.info("MQTT: tool %s call %s published to %s", tool.name, call_id, tool.mqtt_topic)
            if not tool.response_topic:
                return json.dumps({"ok": True})
            return await asyncio.wait_for(reply, tool.timeout_s)
        except asyncio.TimeoutError:
            problem = f"no reply from {tool.response_topic} within {tool.timeout_s:g} s"
            log.warning("MQTT: tool %s: %s", tool.name, problem)
            return _tool_error(problem)
        finally:
            waiters.remove((call_id, reply))

    def _resolve_tool_reply(self, topic: str, payload: bytes) -> None:
        text = payload.decode("utf-8", errors="replace")
        call_id = _reply_call_id(text)
        match = [f for cid, f in self._waiters.get(topic, []) if not f.done() and call_id in (None, cid)]
        if not match:
            log.debug("MQTT: reply on %s matches no waiting tool call (call_id %s); ignored", topic, call_id)
            return
        match[0].set_result(text)


def _reply_call_id(text: str) -> str | None:
    """A JSON reply that names its call_id answers that call; anything else answers the oldest one."""
    try:
        reply = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return str(reply["call_id"]) if isinstance(reply, dict) and "call_id" in reply else None


def _tool_error(message: str) -> str:
    return json.dumps({"ok": False, "error": message})


def _auth_hint(reason: str) -> str:
    low = reason.lower()
    if "password" in low or "authori" in low:
        return " (check mqtt.username and HARK_MQTT_PASSWORD in /etc/hark/env)"
    return ""


async def check_broker(settings: Settings, password: str, timeout_s: float = 5.0) -> tuple[bool, str]:
    """For `hark check`: broker reachable? credentials accepted? The message says the fix."""
    m = settings.mqtt
    if not m.host:
        return True, "MQTT is off (mqtt.host is empty)"
    try:
        client = make_client(m, f"hark-check-{settings.device_id}", password)
    except ConfigError as e:
        return False, str(e)
    client.connect_timeout = timeout_s
    try:
        return await asyncio.wait_for(asyncio.to_thread(_check_sync, client, m, timeout_s), timeout_s + 1.0)
    except asyncio.TimeoutError:
        return False, f"broker {m.host}:{m.port} did not answer within {timeout_s:g} s (is it running?)"


def _check_sync(client: mqtt.Client, m: MqttSettings, timeout_s: float) -> tuple[bool, str]:
    where = f"broker {m.host}:{m.port}"
    result: list[Any] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: result.append(reason)
    try:
        client.connect(m.host, m.port, keepalive=m.keepalive_s)
    except ssl.SSLError as e:
        return False, f"{where}: TLS failed: {e} (check mqtt.ca_file, mqtt.tls_insecure, the server name)"
    except OSError as e:
        return False, f"{where} unreachable: {e} (check mqtt.host / mqtt.port and that the broker runs)"
    deadline = time.monotonic() + timeout_s
    try:
        while not result and time.monotonic() < deadline:
            if client.loop(timeout=0.1) not in (MQTTErrorCode.MQTT_ERR_SUCCESS,):
                break
    finally:
        client.disconnect()
    if not result:
        hint = "needs a client certificate? set mqtt.cert_file/key_file" if m.tls else "expects TLS? mqtt.tls"
        return False, f"{where} closed the connection without answering ({hint})"
    reason = result[0]
    if not reason.is_failure:
        return True, f"{where} reachable; credentials accepted"
    text = str(reason)
    if _auth_hint(text):
        if not m.username:
            return False, f"{where} requires a login ({text}): set mqtt.username and HARK_MQTT_PASSWORD"
        return False, f"{where} refused the password ({text}): set HARK_MQTT_PASSWORD in /etc/hark/env"
    return False, f"{where} refused the connection: {text}"
