"""Process settings: flags and their ``LMA_*`` environment variables (see docs/configuration.md).

A bottom layer: plain frozen data, read by every layer that is configured. :class:`Settings`
groups them (``settings.cache.ttl``; the group classes are in :mod:`adapter.settings.model`);
:func:`options` describes every setting once, and the command line is generated from it.
"""

from __future__ import annotations

from adapter.settings.model import (
    GMP_DEFAULT_MAX_SAMPLE_AGE,
    BackendSettings,
    Option,
    Settings,
    options,
)

__all__ = ["GMP_DEFAULT_MAX_SAMPLE_AGE", "BackendSettings", "Option", "Settings", "options"]
