"""Household commands understood on the device: declared sentences, a constrained recognizer, MQTT actions."""
