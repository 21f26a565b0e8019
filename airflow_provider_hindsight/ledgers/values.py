"""Values as drivers and the API give them, made one shape: timestamps and whole numbers.

The provider's tables keep timestamps as ``TIMESTAMP`` in UTC without time zone (ISO text on SQLite,
which has no timestamp type), and drivers return ``NUMERIC`` columns as ``Decimal``. Every table reads
through these two functions, so each rule lives in one place: timestamps in
:mod:`airflow_provider_hindsight.times` (taken from there), whole numbers here.
"""

from __future__ import annotations

from decimal import Decimal

from airflow_provider_hindsight.times import utc_timestamp

__all__ = ["utc_timestamp", "whole_number"]


def whole_number(value: object) -> object:
    """A whole ``Decimal`` (how drivers return ``NUMERIC``) as an ``int``; any other value as it is."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return value
