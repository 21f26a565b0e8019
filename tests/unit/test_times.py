"""The time module: timestamps as the API, the tables and users give them, and POSIX seconds."""

from __future__ import annotations

import datetime
import subprocess
import sys

import pytest

from airflow_provider_hindsight.times import iso, posix, utc, utc_timestamp

NOON = datetime.datetime(2026, 5, 15, 12, 0, 0)
NOON_POSIX = datetime.datetime(2026, 5, 15, 12, 0, 0, tzinfo=datetime.timezone.utc).timestamp()


@pytest.mark.parametrize(
    "value",
    [
        "2026-05-15T12:00:00Z",  # as the API sends it
        "2026-05-15T14:00:00+02:00",  # an offset
        "2026-05-15 12:00:00",  # as SQLite stores it
        " 2026-05-15T12:00:00Z ",  # typed by a person
        NOON,  # naive: taken as UTC
        datetime.datetime(2026, 5, 15, 7, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
    ],
)
def test_every_shape_of_a_timestamp_is_one_naive_utc_datetime(value: object) -> None:
    assert utc_timestamp(value) == NOON


@pytest.mark.parametrize("value", [None, "", "   ", "yesterday", "2026-13-01", 1_800_000_000, True])
def test_what_is_not_a_timestamp_is_none(value: object) -> None:
    assert utc_timestamp(value) is None


def test_posix_and_utc_are_inverse_and_iso_formats_to_the_second() -> None:
    assert posix(NOON) == NOON_POSIX
    assert posix(None) is None
    assert utc(NOON_POSIX) == NOON
    assert iso(NOON_POSIX + 0.6) == "2026-05-15T12:00:00+00:00"


def test_the_time_module_imports_only_the_standard_library() -> None:
    code = (
        "import sys, airflow_provider_hindsight.times as t; "
        "sys.exit('airflow' in sys.modules or any(m.startswith('airflow_provider_hindsight.') and m != t.__name__ "
        "for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
