"""Username/password and TLS against Mosquitto configured for them, and what `hark check` tells the user."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import pytest

from daemon.config.settings import ConfigError
from daemon.mqtt.bridge import MqttBridge, check_broker
from tests.fixtures_mqtt import (
    AUTH_PASSWORD,
    AUTH_USER,
    Broker,
    Certs,
    MqttProbe,
    RecordingController,
    mqtt_settings,
)

BASE = "hark/testbox"


def online(m: Any) -> bool:
    return bool(m.text == "online")


async def test_password_accepted_and_commands_flow(mosquitto_auth: Broker, mqtt_probe: Any, mqtt_bridge: Any) -> None:
    probe: MqttProbe = mqtt_probe(mosquitto_auth.port, auth=(AUTH_USER, AUTH_PASSWORD))
    probe.subscribe(f"{BASE}/#")
    settings = mqtt_settings(mosquitto_auth.port, username=AUTH_USER)
    _, ctl = mqtt_bridge(settings, password=AUTH_PASSWORD)
    await probe.wait_for(f"{BASE}/availability", online)
    probe.publish(f"{BASE}/cmd/mute", "ON")
    await ctl.wait_for(("set_mute", (True,)))
    ok, message = await check_broker(settings, AUTH_PASSWORD)
    assert ok, message


async def test_wrong_password_is_reported_with_the_fix(
    mosquitto_auth: Broker, mqtt_probe: Any, mqtt_bridge: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings = mqtt_settings(mosquitto_auth.port, username=AUTH_USER)
    ok, message = await check_broker(settings, "wrong")
    assert not ok
    assert "refused the password" in message and "HARK_MQTT_PASSWORD in /etc/hark/env" in message
    ok, message = await check_broker(mqtt_settings(mosquitto_auth.port), "")
    assert not ok and "requires a login" in message and "mqtt.username" in message

    caplog.set_level(logging.WARNING, logger="daemon.mqtt.bridge")
    probe: MqttProbe = mqtt_probe(mosquitto_auth.port, auth=(AUTH_USER, AUTH_PASSWORD))
    probe.subscribe(f"{BASE}/#")
    bridge, _ = mqtt_bridge(settings, password="wrong")
    for _ in range(200):  # bounded: 10 s
        if "refused" in caplog.text:
            break
        await asyncio.sleep(0.05)
    assert "HARK_MQTT_PASSWORD" in caplog.text, caplog.text
    assert not bridge.connected and probe.on(f"{BASE}/availability") == []


async def test_tls_with_ca_and_password(
    mosquitto_tls: Broker, mqtt_certs: Certs, mqtt_probe: Any, mqtt_bridge: Any
) -> None:
    port = mosquitto_tls.ports[0]
    probe: MqttProbe = mqtt_probe(port, tls={"ca_certs": str(mqtt_certs.ca)}, auth=(AUTH_USER, AUTH_PASSWORD))
    probe.subscribe(f"{BASE}/#")
    settings = mqtt_settings(port, username=AUTH_USER, tls=True, ca_file=str(mqtt_certs.ca))
    bridge, ctl = mqtt_bridge(settings, password=AUTH_PASSWORD)
    await probe.wait_for(f"{BASE}/availability", online)
    bridge.publish_volume(23)
    await probe.wait_for(f"{BASE}/volume", lambda m: m.text == "23")
    probe.publish(f"{BASE}/cmd/say", "over TLS")
    await ctl.wait_for(("say", ("over TLS", False)))
    ok, message = await check_broker(settings, AUTH_PASSWORD)
    assert ok, message


async def test_mutual_tls_with_client_certificate(
    mosquitto_tls: Broker, mqtt_certs: Certs, mqtt_probe: Any, mqtt_bridge: Any
) -> None:
    c, port = mqtt_certs, mosquitto_tls.ports[1]
    tls = {"ca_certs": str(c.ca), "certfile": str(c.client_cert), "keyfile": str(c.client_key)}
    probe: MqttProbe = mqtt_probe(port, tls=tls)
    probe.subscribe(f"{BASE}/#")
    files = {"ca_file": str(c.ca), "cert_file": str(c.client_cert), "key_file": str(c.client_key)}
    settings = mqtt_settings(port, tls=True, **files)
    mqtt_bridge(settings)
    await probe.wait_for(f"{BASE}/availability", online)
    ok, message = await check_broker(settings, "")
    assert ok, message
    ok, message = await check_broker(mqtt_settings(port, tls=True, ca_file=str(c.ca)), "")
    assert not ok and "client certificate" in message and "mqtt.cert_file" in message, message


async def test_untrusted_ca_and_wrong_host_name(mosquitto_tls: Broker, mqtt_certs: Certs) -> None:
    c = mqtt_certs
    ok, message = await check_broker(mqtt_settings(mosquitto_tls.ports[1], tls=True, ca_file=str(c.other_ca)), "")
    assert not ok and "TLS failed" in message and "mqtt.ca_file" in message
    misnamed = mosquitto_tls.ports[2]
    ok, message = await check_broker(mqtt_settings(misnamed, tls=True, ca_file=str(c.ca)), "")
    assert not ok and "TLS failed" in message, message
    ok, message = await check_broker(mqtt_settings(misnamed, tls=True, ca_file=str(c.ca), tls_insecure=True), "")
    assert ok, message


async def test_unusable_tls_files_are_config_errors(mqtt_certs: Certs) -> None:
    loop = asyncio.get_running_loop()
    cases = [
        ({"ca_file": "/nonexistent/ca.pem"}, "mqtt.ca_file = '/nonexistent/ca.pem': file not found"),
        ({"cert_file": str(mqtt_certs.client_cert)}, "set both"),
        ({"ca_file": str(mqtt_certs.client_key)}, "TLS files unusable"),
    ]
    for files, words in cases:
        with pytest.raises(ConfigError, match=re.escape(words)):
            MqttBridge(mqtt_settings(1883, tls=True, **files), "", RecordingController(), loop, ["alexa"])
        ok, message = await check_broker(mqtt_settings(1883, tls=True, **files), "")
        assert not ok and words.split(":")[0] in message
