"""Tables the provider keeps in the user's own database, through any Airflow SQL connection.

- :mod:`.sql`: what every ledger shares (:class:`~.sql.SqlTable`), built on :mod:`.faults` (the
  errors, the SQLSTATE rule), :mod:`.statements` (the SQL text) and :mod:`.schema` (the table's shape).
- :mod:`.sync`: the sync ledger of change-only sync (:class:`~.sync.SyncLedger`).
"""
