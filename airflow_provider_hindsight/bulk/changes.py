"""Change-only sync: skip rows whose body Hindsight already has, and record what it accepted.

Sits between row validation and the bulk engine. :meth:`ChangeOnlySync.skip_unchanged` reads
validated rows a batch at a time, looks their hashes up in the sync ledger in one query per
batch, and passes on only new or changed rows (rows it skips end as ``unchanged``).
:meth:`ChangeOnlySync.account` takes each result as it comes back: a 2xx is recorded with the
hash of the exact body sent, a failure of a sent row is forgotten so the next run sends it again
(unless the ledger already held that exact body: a failed resend of it changes nothing in Hindsight),
and a row the run never sent (it stopped early) leaves its entry as it was.
Records are written in checkpoints (every :data:`CHECKPOINT_ROWS` rows or
:data:`CHECKPOINT_SECONDS` seconds), so a run killed mid-way and retried resends at most one
checkpoint window plus the requests that were in flight.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from itertools import islice

from airflow_provider_hindsight.bulk.rows import CheckedRow, RowResult
from airflow_provider_hindsight.ledger import LEDGER_BATCH, SyncLedger, body_sha256
from airflow_provider_hindsight.resources.interviews import InterviewUpdate

CHECKPOINT_ROWS = 200
CHECKPOINT_SECONDS = 5.0


class ChangeOnlySync:
    """One run's use of the ledger: which rows to send, and what to record after they were sent.

    :param ledger: a prepared ledger (``prepare(create=not dry_run)``).
    :param base_url: the API base URL the rows go to; part of each hash, so another account resends.
    :param full_refresh: send every row whatever the ledger says, and record them all again.
    :param dry_run: look up only; :meth:`account` writes nothing.

    A context manager: the operator enters it once; leaving it writes the last checkpoint (not in a
    dry run) and closes the ledger, whatever happened.
    """

    def __init__(self, ledger: SyncLedger, *, base_url: str, full_refresh: bool, dry_run: bool) -> None:
        self.ledger = ledger
        self.base_url = base_url
        self.full_refresh = full_refresh
        self.dry_run = dry_run
        # row position -> (hash, whether the ledger holds that very hash), for the rows handed on and not
        # yet accounted for. Keyed by position, not id: a later row repeating an id ends at once
        # (duplicate_id) while the first is still in flight.
        self._sent: dict[int, tuple[str, bool]] = {}
        self._delivered: list[tuple[int, str]] = []
        self._failed: list[int] = []
        self._last_checkpoint = time.monotonic()
        self._ledger_busy = threading.Lock()  # held while the ledger's connection is in use

    def skip_unchanged(self, checked: Iterable[CheckedRow]) -> Iterator[CheckedRow]:
        """Pass on rows to send and finished rows; a row whose hash the ledger holds ends ``unchanged``."""
        rows = iter(checked)
        while batch := list(islice(rows, LEDGER_BATCH)):
            updates = [item for _, item in batch if isinstance(item, InterviewUpdate)]
            # Looked up in a full refresh too: a resend of the body the ledger holds that fails leaves its entry.
            with self._ledger_busy:
                known = self.ledger.lookup(update.interview_request_id for update in updates)
            for position, item in batch:
                if isinstance(item, RowResult):
                    yield position, item
                    continue
                digest = body_sha256(self.base_url, item.payload)
                held = known.get(item.interview_request_id) == digest
                if held and not self.full_refresh:
                    yield position, RowResult.skipped(position, item.interview_request_id)
                else:
                    self._sent[position] = (digest, held)
                    yield position, item

    def account(self, result: RowResult) -> None:
        """Note how a row handed on ended; write a checkpoint when one is due."""
        sent = self._sent.pop(result.row, None)
        if sent is None or self.dry_run or not result.was_sent:
            return  # a row never sent (the run stopped first) leaves its entry as it was
        digest, held = sent
        if result.succeeded:
            self._delivered.append((result.key, digest))
        elif not held:
            self._failed.append(result.key)
        # A failed resend of the body the ledger holds (a full refresh) leaves the entry: whether or not it
        # arrived, Hindsight has that body, as it had before.
        due = time.monotonic() - self._last_checkpoint >= CHECKPOINT_SECONDS
        if due or len(self._delivered) + len(self._failed) >= CHECKPOINT_ROWS:
            self.checkpoint()

    def checkpoint(self, *, wait: bool = True) -> None:
        """Write what was delivered (and forget what failed) since the last checkpoint.

        ``wait=False`` is for ``on_kill``, which runs in a signal handler on the thread it interrupts:
        when that thread was using the ledger's connection (a look-up, or a checkpoint being written),
        it skips the write instead of waiting for itself forever; the retry then resends at most one
        checkpoint window.
        """
        if not self._ledger_busy.acquire(blocking=wait):
            return
        try:
            delivered, self._delivered = self._delivered, []
            failed, self._failed = self._failed, []
            if delivered:
                self.ledger.record(delivered)
            if failed:
                self.ledger.forget(failed)
            self._last_checkpoint = time.monotonic()
        finally:
            self._ledger_busy.release()

    def __enter__(self) -> ChangeOnlySync:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if not self.dry_run:
                self.checkpoint()
        finally:
            self.ledger.close()
