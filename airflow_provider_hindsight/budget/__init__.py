"""One rate budget per API key, shared by every process that uses the key (connection extra ``budget_conn_id``).

- :mod:`.share`: the arithmetic, pure: the budget's name (a SHA-256 of the key and base URL), the
  fair share and size of a grant, and a grant of start times taken from the key's shared schedule.
- :mod:`.store`: the budget's table on an Airflow SQL connection: one row per key (the shared
  schedule) and one per process that wants requests (for the fair share), each grant one short
  transaction that locks the key's row.
- :mod:`.permits`: :class:`~.permits.SharedBudget`, the permit source a hook's pacer asks before
  each request, from worker threads or the event loop, one per key and pace in a process
  (:data:`~.permits.SHARED_BUDGETS`); the store failing means pacing alone at the last share and one
  WARNING in each affected task's or trigger's log, never a failed run.
"""
