"""Tables the provider keeps in the user's own database, through any Airflow SQL connection.

- :mod:`.sql`: what every ledger shares (:class:`~.sql.SqlTable`, the errors, the SQLSTATE rule).
- :mod:`.sync`: the sync ledger of change-only sync (:class:`~.sync.SyncLedger`).
"""
