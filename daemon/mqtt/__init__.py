"""MQTT: the bridge to the broker, command parsing, Home Assistant discovery, tools as MQTT actions."""
