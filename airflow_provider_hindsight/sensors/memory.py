"""Where a reschedule-mode sensor keeps its watch between pokes: each poke is a new process.

Airflow clears a task instance's XComs at every reschedule, so they cannot carry anything from one
poke to the next. What can:

- Airflow 3.3 and later: ``context["task_state_store"]``, a small JSON store scoped to the task
  instance (the watch is about 40 bytes an id: 20 KB for 500 ids, under its 64 KB default).
- Earlier Airflow (2.11, 3.0 to 3.2): an Airflow Variable named ``hindsight_sensor_watch_<hash>``
  (the hash of dag id, task id, run id and map index), described as the sensor's, written only while
  the sensor waits and deleted when it ends.

The saved watch names the try it belongs to: a task retry starts from a fresh watch (and a fresh
count of failures), as a deferred sensor's retry does.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import Variable

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import Context

STORE_KEY = "hindsight_interview_watch"
VARIABLE_PREFIX = "hindsight_sensor_watch_"


class WatchMemory:
    """Load, save and forget one sensor task instance's watch (JSON), in the store its Airflow offers."""

    def __init__(self, context: Context) -> None:
        ti: Any = context["ti"]
        self.try_number = int(getattr(ti, "try_number", 0) or 0)
        self._store: Any = context.get("task_state_store")
        identity = f"{ti.dag_id}\n{ti.task_id}\n{ti.run_id}\n{getattr(ti, 'map_index', -1)}"
        self.variable_key = VARIABLE_PREFIX + hashlib.sha256(identity.encode()).hexdigest()[:24]
        self.description = (
            f"Kept by HindsightInterviewSensor {ti.dag_id}.{ti.task_id} (run {ti.run_id}) between reschedules; "
            "deleted when the sensor ends."
        )

    def load(self) -> dict[str, Any] | None:
        """The watch this try saved at its last poke, or ``None`` (the first poke of a try)."""
        if self._store is not None:
            saved = self._store.get(STORE_KEY)
        else:
            text = Variable.get(self.variable_key, None)
            saved = json.loads(text) if text else None
        if isinstance(saved, dict) and saved.get("try") == self.try_number:
            return dict(saved.get("watch") or {})
        return None

    def save(self, watch: dict[str, Any]) -> None:
        saved = {"try": self.try_number, "watch": watch}
        if self._store is not None:
            self._store.set(STORE_KEY, saved)
        else:
            Variable.set(self.variable_key, json.dumps(saved, separators=(",", ":")), description=self.description)

    def forget(self) -> None:
        """Delete the saved watch: the sensor ended (done, timed out or failed)."""
        if self._store is not None:
            self._store.delete(STORE_KEY)
        else:
            Variable.delete(self.variable_key)
