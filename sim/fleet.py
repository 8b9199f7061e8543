"""A small simulated fleet for the demo: JetStream pods in two namespaces and a TPU exporter.

Typical use (the demo)::

    with SimFleet() as fleet, LocalPrometheus(fleet.targets) as prom:
        fleet.step(time.monotonic() - t0)   # call about once a second
        ...                                 # point the adapter at prom.url

or, blocking, ``run_fleet(duration=60)`` / ``python -m sim``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Self

from sim.jetstream import JetStreamValues, SimServer, SimTpuExporter, TpuChipValues
from sim.prometheus import LocalPrometheus
from sim.service import Service

__all__ = ["DEFAULT_PODS", "SimFleet", "load_curve", "run_fleet"]

DEFAULT_PODS: Mapping[str, int] = {"default": 3, "other": 2}
"""Namespace → number of JetStream pods."""

TPU_MEMORY_TOTAL = 16 * 1024**3  # bytes of HBM per v5e chip


def load_curve(t: float, *, phase: float = 0.0, period: float = 120.0) -> float:
    """The demo's load level at ``t`` seconds: a slow sine between 0.2 and 0.8 plus bursts.

    Every 60 s, for 10 s starting at second 40 of the minute, a burst adds 0.6 (overload above 1).
    ``phase`` (0–1) shifts the sine so pods do not move in lockstep. Deterministic, never negative.
    """
    base = 0.5 + 0.3 * math.sin(2 * math.pi * (t / period + phase))
    burst = 0.6 if 40.0 <= (t % 60.0) < 50.0 else 0.0
    return round(max(0.0, base + burst), 4)


@dataclass(frozen=True, slots=True)
class SimPod:
    """One simulated pod and its exporter."""

    cluster: str
    namespace: str
    name: str
    phase: float
    server: SimServer

    @property
    def values(self) -> JetStreamValues:
        return self.server.values


class SimFleet(Service):
    """JetStream pods ``<namespace>-jetstream-<i>`` in ``cluster`` plus one TPU exporter.

    Each pod has one TPU chip (``accelerator_id`` ``"0"``) whose memory and duty cycle follow
    the pod's load. :meth:`step` sets every pod from :func:`load_curve` (or ``curve``).
    """

    def __init__(
        self,
        *,
        cluster: str = "demo",
        pods: Mapping[str, int] = DEFAULT_PODS,
        engines: int = 2,
        curve: Callable[..., float] = load_curve,
    ) -> None:
        self.cluster = cluster
        self._curve = curve
        total = sum(pods.values())
        self.pods: list[SimPod] = []
        i = 0
        for namespace, count in pods.items():
            for n in range(count):
                name = f"{namespace}-jetstream-{n}"
                server = SimServer(pod=name, namespace=namespace, cluster=cluster, engines=engines)
                self.pods.append(SimPod(cluster, namespace, name, i / max(1, total), server))
                i += 1
        self.tpu = SimTpuExporter(cluster=cluster)

    @property
    def targets(self) -> list[str]:
        """Every exporter's ``127.0.0.1:<port>`` (after :meth:`start`)."""
        return [p.server.target for p in self.pods] + [self.tpu.target]

    def start(self) -> Self:
        try:
            for pod in self.pods:
                pod.server.start()
            self.tpu.start()
        except BaseException:
            self.stop()
            raise
        self.step(0.0)
        return self

    def stop(self) -> None:
        for pod in self.pods:
            pod.server.stop()
        self.tpu.stop()

    def step(self, t: float) -> dict[str, float]:
        """Set every pod's load for time ``t`` (seconds); returns pod name → load level."""
        levels: dict[str, float] = {}
        for pod in self.pods:
            level = self._curve(t, phase=pod.phase)
            pod.server.load(level)
            pod.server.add_successes(round(10 * level))
            pod.server.observe_ttft(0.05 + 0.2 * level)
            self.tpu.set_chip(
                TpuChipValues(
                    namespace=pod.namespace,
                    pod=pod.name,
                    accelerator_id="0",
                    memory_used=round(TPU_MEMORY_TOTAL * min(0.95, 0.3 + 0.6 * level)),
                    memory_total=TPU_MEMORY_TOTAL,
                    duty_cycle=round(min(100.0, 100 * level), 2),
                    tensorcore_utilization=round(min(100.0, 80 * level), 2),
                )
            )
            levels[pod.name] = level
        return levels


def run_fleet(
    *,
    duration: float | None = None,
    tick: float = 1.0,
    with_prometheus: bool = True,
    cluster: str = "demo",
    pods: Mapping[str, int] = DEFAULT_PODS,
    on_start: Callable[[SimFleet, LocalPrometheus | None], None] | None = None,
    on_tick: Callable[[float, dict[str, float]], None] | None = None,
) -> None:
    """Run a fleet (and a LocalPrometheus scraping it) for ``duration`` seconds, or until Ctrl-C.

    ``on_start(fleet, prometheus)`` is called once everything is up; ``on_tick(t, levels)`` after
    every step. Everything is stopped on return.
    """
    with SimFleet(cluster=cluster, pods=pods) as fleet:
        prom = LocalPrometheus(fleet.targets) if with_prometheus else None
        try:
            if prom is not None:
                prom.start()
            if on_start is not None:
                on_start(fleet, prom)
            started = time.monotonic()
            while duration is None or time.monotonic() - started < duration:
                t = time.monotonic() - started
                levels = fleet.step(t)
                if on_tick is not None:
                    on_tick(t, levels)
                time.sleep(tick)
        except KeyboardInterrupt:
            pass
        finally:
            if prom is not None:
                prom.stop()
