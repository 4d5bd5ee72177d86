"""Observing the daemon from outside: the typed event bus, the JSON-lines trace, Prometheus metrics."""
