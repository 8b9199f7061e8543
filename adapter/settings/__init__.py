"""Process settings: flags and their ``LMA_*`` environment variables (see docs/configuration.md).

A bottom layer: plain frozen data, read by every layer that is configured.
"""

from __future__ import annotations

from adapter.settings.model import GMP_DEFAULT_MAX_SAMPLE_AGE, Settings

__all__ = ["GMP_DEFAULT_MAX_SAMPLE_AGE", "Settings"]
