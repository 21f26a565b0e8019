"""Whole numbers as drivers give them: ``NUMERIC`` columns come back as ``Decimal``.

Timestamps have their own home, :mod:`airflow_provider_hindsight.times`.
"""

from __future__ import annotations

from decimal import Decimal


def whole_number(value: object) -> object:
    """A whole ``Decimal`` (how drivers return ``NUMERIC``) as an ``int``; any other value as it is."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return value
