"""Scraping the serving pods directly: what a pod's metrics endpoint says, as samples.

- :mod:`~adapter.scrape.exposition`: Prometheus text format and OpenMetrics bodies parsed into
  samples, by the rules Prometheus applies when it scrapes (pure).

The scrape client and its feeding of :class:`adapter.promql.window.SampleWindow` (which
:func:`adapter.promql.evaluate.evaluate` reads) come with the provider wiring. This package sits
beside ``adapter.backends`` in the layers: it is a source of answers like a backend, uses the
pure :mod:`adapter.promql` below it, and its client will do I/O, which ``adapter.promql`` may not.
"""

from __future__ import annotations

from adapter.scrape import exposition
from adapter.scrape.exposition import *  # noqa: F403  (the parser, re-exported: exposition.__all__)

__all__ = list(exposition.__all__)
