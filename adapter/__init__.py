"""llm-metrics-adapter: the Kubernetes custom and external metrics API for LLM inference servers."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
