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
checkpoint window plus the requests that were in flight. A checkpoint whose write fails keeps its
rows and writes them with the next one; a second failure in a row stops the run (the operator then
collects the rows in flight, tries a last write, and says how many rows were delivered and recorded).

A full refresh sends every row, except on a retry of the same DAG run: rows recorded since the DAG
run began (``resume_since``) with the same hash were delivered by an earlier try and are skipped.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from itertools import islice

from airflow_provider_hindsight.bulk.rows import CheckedRow, RowResult
from airflow_provider_hindsight.bulk.sync_lease import SyncLease
from airflow_provider_hindsight.ledgers.sync import LEDGER_BATCH, SyncLedger, body_sha256
from airflow_provider_hindsight.resources.interviews import InterviewUpdate

CHECKPOINT_ROWS = 200
CHECKPOINT_SECONDS = 5.0
FAILED_CHECKPOINTS_TO_STOP = 2
"""Checkpoints in a row whose write failed before the run stops: one may be a passing fault."""

log = logging.getLogger(__name__)


class ChangeOnlySync:
    """One run's use of the ledger: which rows to send, and what to record after they were sent.

    :param ledger: a prepared ledger (``prepare(create=not dry_run)``).
    :param base_url: the API base URL the rows go to; part of each hash, so another account resends.
    :param full_refresh: send every row whatever the ledger says, and record them all again.
    :param dry_run: look up only; :meth:`account` writes nothing.
    :param lease: this run's lease on the ``sync_id`` (taken): its heartbeat is refreshed with the
        look-ups and checkpoints, and it is released on leaving.
    :param resume_since: in a full refresh, when the DAG run began (naive UTC): rows recorded since
        then with the same hash are skipped, so the retry of a full refresh resends only what this
        DAG run has not delivered yet. ``None``: a full refresh resends everything.

    A context manager: the operator enters it once; leaving it writes the last checkpoint (not in a
    dry run) and closes the ledger, whatever happened.
    """

    def __init__(
        self,
        ledger: SyncLedger,
        *,
        base_url: str,
        full_refresh: bool,
        dry_run: bool,
        resume_since: datetime.datetime | None = None,
        lease: SyncLease | None = None,
    ) -> None:
        self.ledger = ledger
        self.lease = lease
        self.base_url = base_url
        self.full_refresh = full_refresh
        self.dry_run = dry_run
        self.resume_since = resume_since if full_refresh else None
        self.delivered = 0
        """Rows this run delivered (a 2xx)."""
        self.recorded = 0
        """Rows this run wrote to the ledger as delivered."""
        self.resumed = 0
        """Rows a full refresh skipped because an earlier try of this DAG run delivered them."""
        self.urgent = False
        """Set by ``on_kill``: every result is written at once, not at the next checkpoint."""
        # row position -> (hash, whether the ledger holds that very hash), for the rows handed on and not
        # yet accounted for. Keyed by position, not id: a later row repeating an id ends at once
        # (duplicate_id) while the first is still in flight.
        self._sent: dict[int, tuple[str, bool]] = {}
        self._delivered: list[tuple[int, str]] = []
        self._failed: list[int] = []
        self._failed_writes = 0
        self._kept = 0  # rows kept from a checkpoint whose write failed: the next one is a window later
        self._stopped = False
        self._last_tried = False  # a checkpoint failed for good: results are only kept in memory now
        self._last_checkpoint = time.monotonic()
        self._ledger_busy = threading.Lock()  # held while the ledger's connection is in use

    @property
    def pending(self) -> int:
        """Results not written to the ledger yet (delivered rows to record, failed ones to forget)."""
        return len(self._delivered) + len(self._failed)

    def skip_unchanged(self, checked: Iterable[CheckedRow]) -> Iterator[CheckedRow]:
        """Pass on rows to send and finished rows; a row whose hash the ledger holds ends ``unchanged``."""
        rows = iter(checked)
        while batch := list(islice(rows, LEDGER_BATCH)):
            ids = [item.interview_request_id for _, item in batch if isinstance(item, InterviewUpdate)]
            # Looked up in a full refresh too: a resend of the body the ledger holds that fails leaves its entry.
            known: dict[int, tuple[str, datetime.datetime | None]]
            with self._ledger_busy:
                if self.resume_since is not None:
                    known = dict(self.ledger.lookup_with_times(ids))
                else:
                    known = {key: (digest, None) for key, digest in self.ledger.lookup(ids).items()}
                self._beat()
            for position, item in batch:
                if isinstance(item, RowResult):
                    yield position, item
                    continue
                digest = body_sha256(self.base_url, item.payload)
                held_digest, synced_at = known.get(item.interview_request_id, (None, None))
                held = held_digest == digest
                if held and not self.full_refresh:
                    yield position, RowResult.skipped(position, item.interview_request_id)
                elif held and self._delivered_by_this_dag_run(synced_at):
                    self.resumed += 1
                    yield position, RowResult.skipped(position, item.interview_request_id)
                else:
                    self._sent[position] = (digest, held)
                    yield position, item

    def _delivered_by_this_dag_run(self, synced_at: datetime.datetime | None) -> bool:
        return self.resume_since is not None and synced_at is not None and synced_at >= self.resume_since

    def account(self, result: RowResult) -> None:
        """Note how a row handed on ended; write a checkpoint when one is due.

        Raises the ledger's error when a checkpoint failed :data:`FAILED_CHECKPOINTS_TO_STOP` times in
        a row; later results are then only kept (for :meth:`last_checkpoint`).
        """
        sent = self._sent.pop(result.row, None)
        if sent is None or self.dry_run or not result.was_sent:
            return  # a row never sent (the run stopped first) leaves its entry as it was
        digest, held = sent
        if result.succeeded:
            self.delivered += 1
            self._delivered.append((result.key, digest))
        elif not held:
            self._failed.append(result.key)
        # A failed resend of the body the ledger holds (a full refresh) leaves the entry: whether or not it
        # arrived, Hindsight has that body, as it had before.
        if self._stopped or not self.pending:
            return
        due = time.monotonic() - self._last_checkpoint >= CHECKPOINT_SECONDS
        if self.urgent or due or self.pending - self._kept >= CHECKPOINT_ROWS:
            try:
                self.checkpoint()
            except Exception:
                self._stopped = True
                raise

    def checkpoint(self, *, wait: bool = True, final: bool = False) -> bool:
        """Write what was delivered (and forget what failed) since the last checkpoint; whether it was written.

        A write that fails keeps its rows for the next checkpoint and logs a WARNING; it raises when
        ``final`` or when it is the :data:`FAILED_CHECKPOINTS_TO_STOP`-th failure in a row.

        ``wait=False`` is for ``on_kill``, which runs in a signal handler on the thread it interrupts:
        when that thread was using the ledger's connection (a look-up, or a checkpoint being written),
        it skips the write instead of waiting for itself forever; the run writes it as it goes on.
        """
        if not self._ledger_busy.acquire(blocking=wait):
            return False
        try:
            delivered, failed = list(self._delivered), list(self._failed)
            try:
                if delivered:
                    self.ledger.record(delivered)
                if failed:
                    self.ledger.forget(failed)
            except Exception as error:
                self._failed_writes += 1
                self._kept = len(delivered) + len(failed)
                self._last_checkpoint = time.monotonic()
                if final or self._failed_writes >= FAILED_CHECKPOINTS_TO_STOP:
                    raise
                log.warning(
                    "Could not write a checkpoint to the ledger %s (%s: %s): keeping its %d rows to write with "
                    "the next checkpoint.",
                    self.ledger.table,
                    type(error).__name__,
                    " ".join(str(error).split())[:300],
                    len(delivered) + len(failed),
                )
                return False
            # Only now, and only what was written: rows that came in meanwhile (on_kill) stay.
            del self._delivered[: len(delivered)]
            del self._failed[: len(failed)]
            self.recorded += len(delivered)
            self._failed_writes = self._kept = 0
            self._last_checkpoint = time.monotonic()
            self._beat()
            return True
        finally:
            self._ledger_busy.release()

    def _beat(self) -> None:
        """Refresh the lease's heartbeat when due; a failure is a WARNING (the lease goes stale, nothing else)."""
        if self.lease is None:
            return
        try:
            self.lease.heartbeat()
        except Exception as error:
            log.warning("Could not refresh the lease of the sync %r: %s", self.ledger.sync_id, error)

    def last_checkpoint(self) -> BaseException | None:
        """After an error: write what is still owed once more; the error when it fails too (not raised)."""
        if self.dry_run or not self.pending or self._last_tried:
            return None
        self._last_tried = True
        try:
            self.checkpoint(final=True)
        except Exception as error:
            return error
        return None

    def __enter__(self) -> ChangeOnlySync:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        try:
            if exc_type is None and not self.dry_run:
                try:
                    self.checkpoint(final=True)
                except Exception as error:
                    log.error(
                        "Stopped by a database error at the last checkpoint: %d delivered, %d recorded in the ledger "
                        "(the retry sends the other %d again). %s: %s",
                        self.delivered,
                        self.recorded,
                        self.delivered - self.recorded,
                        type(error).__name__,
                        error,
                    )
                    raise
            elif exc_type is not None:
                last = self.last_checkpoint()
                if last is not None:
                    log.warning("The last checkpoint could not be written either: %s: %s", type(last).__name__, last)
        finally:
            try:
                if self.lease is not None:
                    self.lease.release()
            except Exception as error:  # a stale lease is taken over after a few minutes anyway
                log.warning("Could not release the lease of the sync %r: %s", self.ledger.sync_id, error)
            try:
                self.ledger.close()
            except Exception as error:  # a connection the database already dropped
                if exc_type is None:
                    raise
                log.debug("Closing the ledger failed: %s", error)
