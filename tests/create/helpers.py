"""Helpers of the create-once tests: rows, the operators, what the emulator received, the ledger's rows."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from airflow_provider_hindsight.operators.create import HindsightCreateInterviewsOperator
from airflow_provider_hindsight.testing import HindsightEmulator
from tests.support.ledger_db import LedgerDatabase

LEDGER_CONN_ID = "create_ledger"
TABLE = "hindsight_interviews"
INTERVIEW_TYPE = "type_demo"


def key(number: int) -> str:
    return f"D-{number}:C-{number}"


def email(number: int) -> str:
    return f"contact{number}@example.com"


def rows(numbers: range | list[int], **extra: Any) -> list[dict[str, Any]]:
    """One create row per number: its key, e-mail, name and deal (the operator's interview type default)."""
    return [
        {
            "request_key": key(number),
            "contact_email": email(number),
            "contact_name": f"Contact {number}",
            "deal_id": f"deal_{number}",
            **extra,
        }
        for number in numbers
    ]


def point_hindsight(
    monkeypatch: pytest.MonkeyPatch, emulator: HindsightEmulator, *, requests_per_minute: float = 60_000, **extra: Any
) -> None:
    """Point ``hindsight_default`` at ``emulator`` with connection extras (``max_retries``, ``timeout``, ...)."""
    connection = {
        "conn_type": "hindsight",
        "host": emulator.base_url,
        "password": emulator.api_key,
        "extra": {"requests_per_minute": requests_per_minute, **extra},
    }
    monkeypatch.setenv("AIRFLOW_CONN_HINDSIGHT_DEFAULT", json.dumps(connection))


def creator(interviews: Any, ledger: LedgerDatabase | None, **kwargs: Any) -> HindsightCreateInterviewsOperator:
    arguments: dict[str, Any] = {"task_id": "create", "interviews": interviews, "interview_type_id": INTERVIEW_TYPE}
    if ledger is not None:
        arguments["ledger_conn_id"] = ledger.conn_id
    return HindsightCreateInterviewsOperator(**{**arguments, **kwargs})


def posts(emulator: HindsightEmulator) -> Counter[str]:
    """How many ``POST /interviews`` the emulator received per contact e-mail."""
    return Counter(
        request.json["contact_email"]
        for request in emulator.requests
        if request.method == "POST" and isinstance(request.json, dict)
    )


def states(ledger: LedgerDatabase, table: str = TABLE) -> dict[str, str]:
    return {str(k): str(state) for k, state in ledger.query(f"SELECT request_key, state FROM {table}")}


def created_ids(ledger: LedgerDatabase) -> dict[str, int]:
    rows = ledger.query(f"SELECT request_key, interview_request_id FROM {TABLE} WHERE state = 'created'")
    return {str(k): int(i) for k, i in rows}


def counts(summary: dict[str, Any]) -> tuple[int, int, int, int, int]:
    """``(total, created, existing, failed, unknown)``, checking that total is their sum."""
    result = tuple(summary[name] for name in ("total", "created", "existing", "failed", "unknown"))
    assert result[0] == sum(result[1:]), summary
    return result  # type: ignore[return-value]
