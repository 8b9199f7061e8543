"""Helpers shared by test tiers; no test module imports another test module or a ``conftest``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPO"]

REPO = Path(__file__).resolve().parents[2]
"""The repository root."""
