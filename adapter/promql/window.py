"""An in-memory window of recent samples per series, as a TSDB head would hold them. Pure.

:class:`SampleWindow` is what the local evaluator (:mod:`adapter.promql.evaluate`) reads. It
keeps, per series (a label set, ``__name__`` included), its samples in time order, and applies
the ingestion rules Prometheus applies to scraped data:

- labels with an empty value are dropped (PromQL treats them as absent; Prometheus stores none);
- a sample older than the series' newest is dropped (out of order), and one at the same time
  with another value too (a duplicate); the same value again is a no-op;
- :meth:`SampleWindow.ingest_scrape` writes Prometheus' staleness marker for a series that a
  target exposed in its previous scrape and not in this one, and :meth:`SampleWindow.target_down`
  for every series of a target whose scrape failed, so a vanished pod stops answering at once
  instead of lingering for the 5-minute lookback. Series with explicit timestamps are exempt, as
  in Prometheus.

Memory is bounded by :meth:`SampleWindow.prune`: the caller keeps the history the queries need
(:func:`adapter.promql.evaluate.required_history`) and nothing older.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from adapter.promql.ieee import STALE_NAN, is_stale

__all__ = ["IngestReport", "LabelSet", "SampleWindow", "Series", "label_set"]

LabelSet = tuple[tuple[str, str], ...]
"""Labels as sorted ``(name, value)`` pairs without empty values: hashable and canonical."""

NAME = "__name__"


def label_set(labels: Mapping[str, str]) -> LabelSet:
    """The canonical :data:`LabelSet` of a mapping (empty values dropped)."""
    return tuple(sorted((k, v) for k, v in labels.items() if v != ""))


class Series:
    """One series: its labels and parallel lists of times (int ms) and values, in time order."""

    __slots__ = ("label_map", "labels", "name", "times", "values")

    def __init__(self, labels: LabelSet) -> None:
        self.labels = labels
        self.label_map = dict(labels)
        self.name = self.label_map.get(NAME, "")
        self.times: list[int] = []
        self.values: list[float] = []

    def append(self, t: int, value: float) -> bool:
        """Add a sample; False when Prometheus would drop it (out of order, or another value at
        the same time). The same value again at the same time is accepted and changes nothing.
        """
        if self.times:
            last = self.times[-1]
            if t < last:
                return False
            if t == last:
                previous = self.values[-1]
                if previous != previous and value != value:
                    return is_stale(previous) == is_stale(value)
                return previous == value
        self.times.append(t)
        self.values.append(value)
        return True

    def drop_before(self, t: int) -> None:
        """Forget samples older than ``t`` (ms)."""
        cut = bisect.bisect_left(self.times, t)
        if cut:
            del self.times[:cut]
            del self.values[:cut]


@dataclass(slots=True)
class IngestReport:
    """What :meth:`SampleWindow.ingest_scrape` did with one scrape."""

    appended: int = 0
    dropped: int = 0  # out of order or duplicate timestamps, as Prometheus counts them
    stale: int = 0  # staleness markers written for series gone since the previous scrape


@dataclass(slots=True)
class _Target:
    series: set[LabelSet] = field(default_factory=set)


class SampleWindow:
    """Recent samples of every series, indexed by metric name for selection."""

    def __init__(self) -> None:
        self._series: dict[LabelSet, Series] = {}
        self._by_name: dict[str, dict[LabelSet, Series]] = {}
        self._targets: dict[str, _Target] = {}

    def __len__(self) -> int:
        return len(self._series)

    def series(self, name: str | None = None) -> Iterator[Series]:
        """Every series, or those whose ``__name__`` is ``name``."""
        if name is None:
            return iter(list(self._series.values()))
        return iter(list(self._by_name.get(name, {}).values()))

    def _get(self, labels: LabelSet) -> Series:
        series = self._series.get(labels)
        if series is None:
            series = Series(labels)
            self._series[labels] = series
            self._by_name.setdefault(series.name, {})[labels] = series
        return series

    def append(self, labels: Mapping[str, str] | LabelSet, t: int, value: float) -> bool:
        """Add one sample at ``t`` (int ms); False when Prometheus would drop it."""
        key = labels if isinstance(labels, tuple) else label_set(labels)
        if not key:
            raise ValueError("a series needs at least one non-empty label")
        return self._get(key).append(int(t), float(value))

    def ingest_scrape(
        self,
        target: str,
        samples: Iterable[tuple[Mapping[str, str], float, int | None]],
        t: int,
    ) -> IngestReport:
        """Add one scrape of ``target`` taken at ``t`` (int ms).

        Each sample is ``(labels, value, explicit timestamp in ms or None)``. Series the target
        exposed last time (without explicit timestamps) and not now get a staleness marker at
        ``t``, as Prometheus writes one.
        """
        report = IngestReport()
        seen: set[LabelSet] = set()
        for labels, value, timestamp in samples:
            key = label_set(labels)
            if not key:
                continue
            if timestamp is None:
                seen.add(key)
            if self._get(key).append(t if timestamp is None else int(timestamp), float(value)):
                report.appended += 1
            else:
                report.dropped += 1
        state = self._targets.setdefault(target, _Target())
        report.stale = self._mark_stale(state.series - seen, t)
        state.series = seen
        return report

    def target_down(self, target: str, t: int) -> int:
        """A failed scrape of ``target`` at ``t``: mark all its series stale; returns how many."""
        state = self._targets.get(target)
        if state is None:
            return 0
        count = self._mark_stale(state.series, t)
        state.series = set()
        return count

    def forget_target(self, target: str, t: int) -> int:
        """``target`` is gone (a deleted pod): mark its series stale and forget the target."""
        count = self.target_down(target, t)
        self._targets.pop(target, None)
        return count

    def _mark_stale(self, keys: Iterable[LabelSet], t: int) -> int:
        count = 0
        for key in keys:
            series = self._series.get(key)
            if series is not None and series.append(t, STALE_NAN):
                count += 1
        return count

    def prune(self, before: int) -> None:
        """Forget samples older than ``before`` (int ms) and series left without samples."""
        for key, series in list(self._series.items()):
            series.drop_before(before)
            if not series.times:
                del self._series[key]
                by_name = self._by_name[series.name]
                del by_name[key]
                if not by_name:
                    del self._by_name[series.name]
