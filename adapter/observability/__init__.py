"""The adapter's own telemetry (Prometheus metrics) and structured logging.

A bottom layer, so that every layer may count and log: imports nothing else from :mod:`adapter`.
"""
