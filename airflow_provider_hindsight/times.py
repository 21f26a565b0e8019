"""Timestamps as the API, the tables and users give them, and the POSIX seconds the polling plan counts in.

Pure, standard library only: the one parser of timestamps (:func:`utc_timestamp`; a ``Retry-After``
HTTP date aside, :mod:`airflow_provider_hindsight.hooks.retry`'s), now as the tables keep it
(:func:`utc_now`), and the conversions between ``datetime`` and POSIX seconds. The provider's tables keep
naive UTC ``datetime`` values (ISO text on SQLite); the API sends ISO-8601 text with ``Z`` or an
offset; the polling plan and the triggers count in POSIX seconds (UTC).
"""

from __future__ import annotations

import datetime


def utc_now() -> datetime.datetime:
    """Now in UTC without time zone, as the provider's tables keep timestamps."""
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def utc_timestamp(value: object) -> datetime.datetime | None:
    """A timestamp as a naive UTC ``datetime``; ``None`` when absent or not a timestamp.

    Takes a ``datetime`` (an aware one is converted to UTC, a naive one is taken as UTC), or ISO-8601
    text as SQLite stores it and as the API sends it (``...Z`` or an offset).
    """
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, str) and value.strip():
        try:
            moment = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    return moment


def posix(moment: datetime.datetime | None) -> float | None:
    """A naive UTC ``datetime`` (as :func:`utc_timestamp` gives) as POSIX seconds; ``None`` stays ``None``."""
    return None if moment is None else moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def utc(seconds: float) -> datetime.datetime:
    """POSIX seconds as a naive UTC ``datetime``, as the tables keep it."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(tzinfo=None)


def iso(seconds: float) -> str:
    """POSIX seconds as ISO-8601 UTC text to the second, for a log line: ``2026-05-15T10:00:00+00:00``."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).isoformat(timespec="seconds")
