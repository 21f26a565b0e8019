"""One run of a ``sync_id`` at a time: a lease in the ledger, so that two runs at once do not send every row twice.

Two runs of one change-only sync started together (a manual run beside a scheduled one, two DAGs with
one ``sync_id``) each read the ledger before the other had recorded anything, and sent every row.
Now a run takes the sync's lease (a row of the lease table beside the ledger, see
:mod:`airflow_provider_hindsight.ledgers.sync_lease`) before it reads the ledger. A
run that finds the lease held waits for it, with a WARNING naming the ``sync_id`` and since when the
other run holds it, and then reads the ledger: rows the other run delivered are unchanged.

The holder refreshes the lease's heartbeat at every checkpoint and ledger look-up (at most every
:data:`HEARTBEAT_SECONDS`) and deletes it at the end. A lease whose heartbeat is older than
:data:`STALE_AFTER_SECONDS` belongs to a run that was killed: it is taken over, so a killed run does not
block its sync for ever; a retry of the same task instance (same DAG, task, DAG run and map index) takes
its own earlier try's lease over at once.
"""

from __future__ import annotations

import datetime
import logging
import secrets
import time
from collections.abc import Callable

from airflow_provider_hindsight.ledgers.sync import SyncLedger
from airflow_provider_hindsight.ledgers.sync_lease import SyncLeaseRow

STALE_AFTER_SECONDS = 180.0
"""A lease whose heartbeat is older than this belongs to a run that was killed (allows for some clock skew)."""
HEARTBEAT_SECONDS = 30.0
"""The holder refreshes the heartbeat at most this often."""
POLL_SECONDS = 2.0
"""How often a waiting run looks at the lease again."""
STILL_WAITING_SECONDS = 300.0
"""How often a waiting run repeats its WARNING."""

log = logging.getLogger(__name__)


class SyncLease:
    """This run's lease on its ``sync_id``: :meth:`acquire` (waits), :meth:`heartbeat`, :meth:`release`.

    The token is random: it tells this run's lease from any other's, even another try of the same
    task instance (which shares ``owner``).
    """

    def __init__(
        self,
        ledger: SyncLedger,
        *,
        owner: str,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ledger = ledger
        self.owner = owner
        self._clock = clock
        self._sleep = sleep
        self.token = secrets.token_hex(16)
        self.held = False
        self.waited_seconds = 0.0
        self._last_beat = 0.0

    def acquire(self) -> None:
        """Take the lease, waiting while another run of the sync holds it."""
        started = self._clock()
        warned_at: float | None = None
        while True:
            held = self.ledger.leases.take(
                self.ledger.sync_id, holder=self.token, owner=self.owner, take_over=self._may_take_over
            )
            if held is None:
                break
            if held.holder and (warned_at is None or self._clock() - warned_at >= STILL_WAITING_SECONDS):
                warned_at = self._clock()
                log.warning(
                    "Another run of the sync %r is in progress (since %s UTC, last heartbeat %s UTC): waiting for it "
                    "to finish (waited %.0f s so far), then reading the ledger, so that the rows it delivered are "
                    "not sent again.",
                    self.ledger.sync_id,
                    _utc(held.started_at),
                    _utc(held.heartbeat_at),
                    self._clock() - started,
                )
            self._sleep(POLL_SECONDS)
        self.held = True
        self.waited_seconds = self._clock() - started
        self._last_beat = self._clock()
        if warned_at is not None:
            log.warning(
                "The other run of the sync %r ended after %.0f s of waiting: reading the ledger now.",
                self.ledger.sync_id,
                self.waited_seconds,
            )

    def _may_take_over(self, lease: SyncLeaseRow) -> bool:
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        if lease.owner == self.owner:
            log.info("Taking over the lease of the sync %r from an earlier try of this task.", self.ledger.sync_id)
            return True
        if lease.heartbeat_at is None or (now - lease.heartbeat_at).total_seconds() > STALE_AFTER_SECONDS:
            log.warning(
                "Taking over the lease of the sync %r: its holder's last heartbeat was at %s UTC, more than %.0f s "
                "ago (that run was killed).",
                self.ledger.sync_id,
                _utc(lease.heartbeat_at),
                STALE_AFTER_SECONDS,
            )
            return True
        return False

    def heartbeat(self, *, force: bool = False) -> None:
        """Refresh the heartbeat when one is due (or ``force``); the caller holds the ledger's connection."""
        if not self.held or (not force and self._clock() - self._last_beat < HEARTBEAT_SECONDS):
            return
        self._last_beat = self._clock()
        if not self.ledger.leases.refresh(self.ledger.sync_id, self.token):
            log.warning("The lease of the sync %r was taken over by another run.", self.ledger.sync_id)

    def release(self) -> None:
        """Give the lease back: a waiting run may start."""
        if self.held:
            self.held = False
            self.ledger.leases.release(self.ledger.sync_id, self.token)


def _utc(moment: datetime.datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S}" if moment is not None else "unknown"
