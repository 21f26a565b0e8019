"""The answers trigger's bookkeeping in the landing table: which completed rows were announced, and when.

The trigger adds the column ``announced_at`` to the transcripts table (the landing leaves it alone).
Adding it marks the table's completed rows as announced in the same transaction: turning the
watcher on does not flood the DAGs downstream. A completed row whose ``announced_at`` is empty is
due to be announced, whoever landed it; :meth:`Announcements.mark` sets it once its event is handed
to Airflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow_provider_hindsight.exceptions import HindsightError
from airflow_provider_hindsight.ledgers.sql import LEDGER_BATCH, batches
from airflow_provider_hindsight.ledgers.transcripts import ANNOUNCED_AT, TranscriptTable

MAX_IDS_PER_EVENT = 1000
"""At most this many ids in one event (about 10 KB in the metadata database)."""


class Announcements:
    """``announced_at`` of the transcripts table ``table`` (prepared, writable)."""

    def __init__(self, table: TranscriptTable) -> None:
        self.table = table
        self.sql = table.sql

    def prepare(self) -> bool:
        """Add ``announced_at`` when the table lacks it, marking its completed rows announced; whether it was added.

        Two triggers adding it at once: the one that finds it there afterwards goes on.
        """
        if self._has_column():
            return False
        dialect = self.sql.dialect

        def add(cursor: Any) -> None:
            if dialect.is_sqlite:
                cursor.execute("BEGIN IMMEDIATE")  # the column and the marks in one transaction
            cursor.execute(f"ALTER TABLE {self.sql.table} ADD COLUMN {ANNOUNCED_AT} TIMESTAMP")
            cursor.execute(
                f"UPDATE {self.sql.table} SET {ANNOUNCED_AT} = {dialect.placeholder} WHERE status = 'completed'",
                (self.table.now(),),
            )

        try:
            self.sql.write(add)
        except HindsightError:
            raise
        except Exception as error:
            if self._has_column():  # another trigger added it at the same moment
                return False
            raise self.sql.messages.error(
                f"cannot add the column {ANNOUNCED_AT} to {self.sql.messages.where}: {self.sql.describe(error)}. "
                f"Fix: run, as a user who may alter the table, ALTER TABLE {self.sql.table} ADD COLUMN {ANNOUNCED_AT} "
                f"TIMESTAMP; UPDATE {self.sql.table} SET {ANNOUNCED_AT} = CURRENT_TIMESTAMP WHERE status = 'completed';"
            ) from None
        return True

    def _has_column(self) -> bool:
        def read(cursor: Any) -> bool:
            cursor.execute(f"SELECT * FROM {self.sql.table} WHERE 1 = 0")
            names = [str(column[0]).lower() for column in cursor.description or ()]
            cursor.fetchall()
            return ANNOUNCED_AT in names

        return self.sql.read(read)

    def unannounced(self, limit: int = MAX_IDS_PER_EVENT) -> list[int]:
        """The completed rows not announced yet, lowest id first, at most ``limit``."""

        def read(cursor: Any) -> list[int]:
            cursor.execute(
                f"SELECT interview_request_id FROM {self.sql.table} "
                f"WHERE status = 'completed' AND {ANNOUNCED_AT} IS NULL ORDER BY interview_request_id"
            )
            return [int(row[0]) for row in cursor.fetchmany(limit)]

        return self.sql.read(read)

    def mark(self, interview_request_ids: Sequence[int]) -> int:
        """Set ``announced_at`` to now on these rows (where empty); how many changed."""
        now = self.table.now()
        p = self.sql.dialect.placeholder
        changed = 0
        for batch in batches(sorted(set(interview_request_ids)), LEDGER_BATCH):

            def update(cursor: Any, batch: list[int] = batch) -> int:
                keys = self.sql.dialect.placeholders(len(batch))
                cursor.execute(
                    f"UPDATE {self.sql.table} SET {ANNOUNCED_AT} = {p} "
                    f"WHERE {ANNOUNCED_AT} IS NULL AND interview_request_id IN ({keys})",
                    (now, *batch),
                )
                return max(int(cursor.rowcount), 0)

            changed += self.sql.write(update)
        return changed
