"""Moved to :mod:`airflow_provider_hindsight.ledgers.sync`; these names stay importable from here until
every import uses the new path."""

from __future__ import annotations

from airflow_provider_hindsight.ledgers.sync import (
    DEFAULT_LEDGER_TABLE,
    LEDGER_BATCH,
    LEDGER_COLUMNS,
    LEDGER_KEY,
    MAX_SYNC_ID_CHARS,
    PROBE_ID,
    SQLITE_BUSY_TIMEOUT_MS,
    WRITE_ATTEMPTS,
    HindsightLedgerError,
    SyncLedger,
    body_sha256,
    upsert_statement,
    validate_ledger_table,
    validate_sync_id,
)

__all__ = [
    "DEFAULT_LEDGER_TABLE",
    "LEDGER_BATCH",
    "LEDGER_COLUMNS",
    "LEDGER_KEY",
    "MAX_SYNC_ID_CHARS",
    "PROBE_ID",
    "SQLITE_BUSY_TIMEOUT_MS",
    "WRITE_ATTEMPTS",
    "HindsightLedgerError",
    "SyncLedger",
    "body_sha256",
    "upsert_statement",
    "validate_ledger_table",
    "validate_sync_id",
]
