"""Scraping the serving pods directly: what a pod's metrics endpoint says, as samples.

- :mod:`~adapter.scrape.exposition`: Prometheus text format and OpenMetrics bodies parsed into
  samples, by the rules Prometheus applies when it scrapes (pure).

The scrape client and its feeding of :class:`adapter.promql.window.SampleWindow` (which
:func:`adapter.promql.evaluate.evaluate` reads) come with the provider wiring. This package sits
beside ``adapter.backends`` in the layers: it is a source of answers like a backend, uses the
pure :mod:`adapter.promql` below it, and its client will do I/O, which ``adapter.promql`` may not.
"""

from __future__ import annotations

from adapter.scrape.exposition import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_SAMPLES,
    Exposition,
    ExpositionError,
    ScrapedSample,
    exposition_format,
    parse_exposition,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SAMPLES",
    "Exposition",
    "ExpositionError",
    "ScrapedSample",
    "exposition_format",
    "parse_exposition",
]
