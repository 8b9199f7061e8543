from __future__ import annotations

import math

import pytest

from adapter.core.quantity import format_quantity


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0"),
        (0.0004, "0"),
        (0.0005, "0"),  # banker's rounding of 0.5 milli-units; the HPA reads milli-units
        (0.0015, "2m"),
        (1.5, "1500m"),
        (0.42, "420m"),
        (42, "42"),
        (1500, "1500"),
        (3000, "3k"),
        (2_000_000, "2M"),
        (5e9, "5G"),
        (-1.5, "-1500m"),
        (-2000, "-2k"),
        (1e15, "1P"),
        (1e18, "1e18"),
        (1e21, "1e21"),
        (-1.5e22, "-1.5e22"),
        (12.3456, "12346m"),
    ],
)
def test_format_quantity(value: float, expected: str) -> None:
    assert format_quantity(value) == expected


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_have_no_quantity(value: float) -> None:
    with pytest.raises(ValueError, match="no Kubernetes quantity"):
        format_quantity(value)
