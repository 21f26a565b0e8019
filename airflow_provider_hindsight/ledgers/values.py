"""Values as drivers and the API give them, made one shape: timestamps and whole numbers.

The provider's tables keep timestamps as ``TIMESTAMP`` in UTC without time zone (ISO text on SQLite,
which has no timestamp type), and drivers return ``NUMERIC`` columns as ``Decimal``. Every table reads
through these two functions, so each rule lives in one place.
"""

from __future__ import annotations

import datetime
from decimal import Decimal


def utc_timestamp(value: object) -> datetime.datetime | None:
    """A timestamp as a naive UTC ``datetime``; ``None`` when absent or not a timestamp.

    Takes a ``datetime`` (an aware one is converted to UTC), or ISO-8601 text as SQLite stores it and
    as the API sends it (``...Z`` or an offset).
    """
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return moment


def whole_number(value: object) -> object:
    """A whole ``Decimal`` (how drivers return ``NUMERIC``) as an ``int``; any other value as it is."""
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return value
