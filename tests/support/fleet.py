"""A simulated fleet with KNOWN values, described by plain data so tests compute expectations.

Two clusters (``c1``, ``c2``) × two namespaces (``team-a``, ``team-b``). Pod names repeat on
purpose (``jetstream-0`` lives in every cluster and namespace) so that any query not scoped to
cluster *and* namespace mixes values and fails the test. Every pod's values differ.
Each pod has one TPU chip reported by its cluster's TPU exporter.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from sim.jetstream import JetStreamValues, SimServer, SimTpuExporter, TpuChipValues

__all__ = [
    "CLUSTERS",
    "ENGINES",
    "LAYOUT",
    "NAMESPACES",
    "ChipSpec",
    "Fleet",
    "PodSpec",
    "known_values",
    "start_fleet",
]

CLUSTERS = ("c1", "c2")
NAMESPACES = ("team-a", "team-b")
ENGINES = 2
LAYOUT: dict[tuple[str, str], int] = {
    ("c1", "team-a"): 2,
    ("c1", "team-b"): 2,
    ("c2", "team-a"): 1,
    ("c2", "team-b"): 1,
}
"""(cluster, namespace) → number of pods."""

TPU_MEMORY_TOTAL = 16 * 1024**3


@dataclass(frozen=True, slots=True)
class PodSpec:
    cluster: str
    namespace: str
    name: str
    values: JetStreamValues
    successes: float

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.cluster, self.namespace, self.name)

    @property
    def mean_slots(self) -> float:
        return sum(self.values.slots) / len(self.values.slots)


@dataclass(frozen=True, slots=True)
class ChipSpec:
    cluster: str
    chip: TpuChipValues


@dataclass(frozen=True, slots=True)
class Fleet:
    """Everything the simulators export, and where they listen."""

    pods: tuple[PodSpec, ...]
    chips: tuple[ChipSpec, ...]
    targets: tuple[str, ...]

    def pods_in(self, *, cluster: str | None = None, namespace: str | None = None) -> list[PodSpec]:
        return [
            p
            for p in self.pods
            if (cluster is None or p.cluster == cluster)
            and (namespace is None or p.namespace == namespace)
        ]

    def chips_in(
        self, *, cluster: str | None = None, namespace: str | None = None
    ) -> list[TpuChipValues]:
        return [
            c.chip
            for c in self.chips
            if (cluster is None or c.cluster == cluster)
            and (namespace is None or c.chip.namespace == namespace)
        ]


def known_values(k: int) -> JetStreamValues:
    """Distinct, exactly representable values for the ``k``-th pod of the fleet."""
    slots = (0.125 * ((k % 7) + 1), 0.0625 * (k + 1))
    generate = (k, 2 * k)
    prefill = 3 + 7 * k
    return JetStreamValues(
        prefill_backlog=prefill,
        slots=slots,
        transfer_backlog=(k % 3, 1),
        generate_backlog=generate,
        requests_waiting=prefill + sum(generate),
        kv_cache=sum(slots) / len(slots),
    )


@contextlib.contextmanager
def start_fleet() -> Iterator[Fleet]:
    """Start every exporter with its known values; stop them all on exit."""
    servers: list[SimServer] = []
    exporters: dict[str, SimTpuExporter] = {}
    pods: list[PodSpec] = []
    chips: list[ChipSpec] = []
    try:
        for cluster in CLUSTERS:
            exporter = SimTpuExporter(cluster=cluster, plugin_pod=f"tpu-device-plugin-{cluster}")
            exporters[cluster] = exporter.start()
        k = 0
        for (cluster, namespace), count in LAYOUT.items():
            for i in range(count):
                name = f"jetstream-{i}"
                server = SimServer(pod=name, namespace=namespace, cluster=cluster, engines=ENGINES)
                servers.append(server.start())
                values = known_values(k)
                server.set_values(values)
                server.add_successes(100 + k)
                pods.append(PodSpec(cluster, namespace, name, values, 100.0 + k))
                chip = TpuChipValues(
                    namespace=namespace,
                    pod=name,
                    accelerator_id="0",
                    memory_used=float(1024**3 * (k + 1)),
                    memory_total=float(TPU_MEMORY_TOTAL),
                    duty_cycle=10.0 * (k + 1),
                    tensorcore_utilization=5.0 * (k + 1),
                )
                exporters[cluster].set_chip(chip)
                chips.append(ChipSpec(cluster, chip))
                k += 1
        targets = tuple(s.target for s in servers) + tuple(e.target for e in exporters.values())
        yield Fleet(pods=tuple(pods), chips=tuple(chips), targets=targets)
    finally:
        for server in servers:
            server.stop()
        for exporter in exporters.values():
            exporter.stop()
