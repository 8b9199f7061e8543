"""Integration tests: real Prometheus started by the fixtures."""
