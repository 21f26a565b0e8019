"""Tables the provider keeps in the user's own database, through any Airflow SQL connection.

Small parts, composed: :mod:`.dialect` (what differs between databases), :mod:`.table` (a table's
columns, key and SQL text), :mod:`.schema` (creating and checking a table before any request),
:mod:`.faults` (the errors and their messages; what a driver's error means is
:mod:`airflow_provider_hindsight.sql_connection.faults`'s), :mod:`.values` (whole numbers as
drivers return them; timestamps have :mod:`airflow_provider_hindsight.times`), and :mod:`.sql`'s
:class:`~.sql.SqlTable`, the one place that connects, retries and runs a table's statements. Each table
holds a :class:`~.sql.SqlTable`:

- :mod:`.sync`: the sync ledger of change-only sync (:class:`~.sync.SyncLedger`), with its leases
  in a table of their own (:mod:`.sync_lease`);
- :mod:`.interviews`: the interview ledger of create-once (:class:`~.interviews.InterviewLedger`);
- :mod:`.transcripts`: the landing table of statuses and transcripts (:class:`~.transcripts.TranscriptTable`);
- :mod:`.history`: the run history's two tables (:class:`~.history.HistoryTable`).

The shared rate budget's table is not one of them: the budget sits below the ledgers and keeps its own
(:mod:`airflow_provider_hindsight.budget.store`).
"""
