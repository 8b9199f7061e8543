"""What the fuzz tier generated in this session: every test module counts through :func:`count`,
and the tier's conftest prints the totals at the end (``fuzz: N generated requests …``) so the
figure can be quoted in docs/security.md."""

from __future__ import annotations

from collections import Counter

__all__ = ["COUNTS", "PEAKS", "count"]

COUNTS: Counter[str] = Counter()
"""What the fuzz tier generated in this session, by kind (``api``, ``schemathesis``, ``rules``…)."""

PEAKS: dict[str, int] = {}
"""Bytes of resident-set growth measured per hostile input (the largest is printed)."""


def count(kind: str, n: int = 1) -> None:
    """Record ``n`` generated inputs of ``kind``."""
    COUNTS[kind] += n
