"""Simulators for demos and tests: JetStream and TPU exporters, a local Prometheus, a fleet.

Package code, not test code: ``make demo`` runs :func:`sim.fleet.run_fleet`.
"""

from __future__ import annotations
