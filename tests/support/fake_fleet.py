"""The fleet the API tier's fake backend holds: known series for two clusters and two namespaces.

:func:`fleet_series` is the data (the same metric names everywhere, different values, stamped
2 s before :data:`NOW`); :func:`fleet_backend` is a :class:`FakeBackend` holding it.
"""

from __future__ import annotations

import time

from sim.fake_backend import FakeBackend, SeriesSpec

__all__ = ["NOW", "fleet_backend", "fleet_series", "jetstream_series", "tpu_series"]

NOW = time.time()


def jetstream_series(
    *, cluster: str, namespace: str, pod: str, backlog: float, slots: tuple[float, ...], ts: float
) -> list[SeriesSpec]:
    target = {"cluster": cluster, "namespace": namespace, "pod": pod, "id": pod, "job": "jetstream"}
    out: list[SeriesSpec] = [
        ({"__name__": "jetstream_prefill_backlog_size", **target}, backlog, ts)
    ]
    for idx, fraction in enumerate(slots):
        out.append(
            (
                {"__name__": "jetstream_slots_used_percentage", "idx": str(idx), **target},
                fraction,
                ts,
            )
        )
    return out


def tpu_series(
    *, cluster: str, namespace: str, pod: str, used: float, total: float, ts: float
) -> list[SeriesSpec]:
    labels = {
        "cluster": cluster,
        "namespace": "kube-system",
        "exported_namespace": namespace,
        "exported_pod": pod,
        "container": "jetstream-http",
        "accelerator_id": "0",
        "make": "cloud-tpu",
    }
    return [
        ({"__name__": "memory_used", **labels}, used, ts),
        ({"__name__": "memory_total", **labels}, total, ts),
    ]


def fleet_series() -> list[SeriesSpec]:
    """Two clusters, two namespaces; the same metric names everywhere, different values."""
    ts = NOW - 2
    series: list[SeriesSpec] = []
    series += jetstream_series(
        cluster="c1", namespace="team-a", pod="a-0", backlog=3, slots=(0.5, 0.25), ts=ts
    )
    series += jetstream_series(
        cluster="c1", namespace="team-a", pod="a-1", backlog=5, slots=(1.0, 0.5), ts=ts
    )
    series += jetstream_series(
        cluster="c1", namespace="team-b", pod="b-0", backlog=100, slots=(0.9, 0.9), ts=ts
    )
    series += jetstream_series(
        cluster="c2", namespace="team-a", pod="a-0", backlog=1000, slots=(0.1, 0.1), ts=ts
    )
    series += tpu_series(cluster="c1", namespace="team-a", pod="a-0", used=4, total=16, ts=ts)
    series += tpu_series(cluster="c1", namespace="team-a", pod="a-1", used=8, total=16, ts=ts)
    series += tpu_series(cluster="c1", namespace="team-b", pod="b-0", used=16, total=16, ts=ts)
    return series


def fleet_backend() -> FakeBackend:
    """The fake backend holding :func:`fleet_series`."""
    backend = FakeBackend()
    backend.set_series(fleet_series())
    return backend
