"""One rate budget per API key, shared by every process that uses the key (connection extra ``budget_conn_id``).

- :mod:`.share`: the arithmetic, pure: the budget's name (a SHA-256 of the key and base URL), the
  fair share and size of a lease, and a lease taken from the key's shared schedule.
- :mod:`.store`: the budget's table on an Airflow SQL connection: one row per key (the shared
  schedule) and one per process that wants requests (for the fair share), each lease one short
  transaction that locks the key's row.
- :mod:`.permits`: :class:`~.permits.SharedBudget`, the permit source a hook's pacer asks before
  each request, from worker threads or the event loop; the store failing means one WARNING and
  local pacing, never a failed run.
"""
