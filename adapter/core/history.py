"""A short, bounded history of the values the provider served, for ``/debug/ui``.

Filled by a provider observer (``MetricsProvider.observers``); memory is bounded by
``points × max_series``.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from typing import Any

from adapter.core.answer import Answer
from adapter.core.request import ApiRequest

__all__ = ["SeriesRecorder"]


class SeriesRecorder:
    """The last ``points`` values of at most ``max_series`` series (least recently updated
    series are dropped first). A series is (group, metric, namespace, object or label set)."""

    def __init__(self, *, points: int = 240, max_series: int = 512) -> None:
        self.points = points
        self.max_series = max_series
        self._series: OrderedDict[tuple[str, str, str, str], deque[tuple[float, float, float]]]
        self._series = OrderedDict()

    def record(self, request: ApiRequest, answer: Answer) -> None:
        now = time.time()
        for v in answer.values:
            if v.described is not None:
                who = v.described.name
            else:
                who = ",".join(f"{k}={val}" for k, val in sorted(v.labels.items())) or "*"
            key = (request.group, request.metric, request.namespace or "", who)
            points = self._series.get(key)
            if points is None:
                points = deque(maxlen=self.points)
                self._series[key] = points
                while len(self._series) > self.max_series:
                    self._series.popitem(last=False)
            self._series.move_to_end(key)
            # (when served, value, sample timestamp): freshness is served - sample time.
            if not points or points[-1][2] != v.timestamp or now - points[-1][0] > 1.0:
                points.append((now, v.value, v.timestamp))

    def document(self, namespace: str | None = None) -> list[dict[str, Any]]:
        out = []
        for (group, metric, ns, who), points in self._series.items():
            if namespace is not None and ns != namespace:
                continue
            out.append(
                {
                    "group": group,
                    "metric": metric,
                    "namespace": ns,
                    "object": who,
                    "points": [
                        {"t": round(t, 3), "value": value, "age": round(max(0.0, t - ts), 3)}
                        for t, value, ts in points
                    ],
                }
            )
        return sorted(out, key=lambda s: (s["metric"], s["namespace"], s["object"]))
