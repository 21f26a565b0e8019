"""A DB-API session of the provider's tables: which driver it is, how long its statements wait, and its thread.

- :func:`driver_of`, :func:`is_sqlite`, :func:`is_postgres`: the driver behind a connection (or an
  error), through the class hierarchy, so that a driver's connection subclass counts too.
- :func:`bound_waits`: the session's bounds on waiting for another session's lock. SQLite waits
  ``busy_timeout`` for another writer; a PostgreSQL session sets ``lock_timeout`` (and
  ``statement_timeout`` where asked) unless the role's own setting is shorter, which is kept.
- :class:`SessionThread`: the one thread that uses a connection. A DB-API connection is not for
  several threads at once, and ``sqlite3``'s belongs to the thread that made it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

POSTGRES_DRIVERS = frozenset({"psycopg", "psycopg2"})
_DRIVERS = frozenset({*POSTGRES_DRIVERS, "sqlite3", "MySQLdb", "pymysql", "mysql"})

T = TypeVar("T")


def driver_of(thing: object) -> str | None:
    """The top-level module of the DB-API driver that ``thing`` (a connection or an error) comes from.

    ``"psycopg"``, ``"psycopg2"``, ``"sqlite3"``, ``"MySQLdb"``, ``"pymysql"`` or ``"mysql"``; ``None`` for another.
    """
    for cls in type(thing).__mro__:
        root = cls.__module__.partition(".")[0]
        if root in _DRIVERS:
            return root
    return None


def is_sqlite(connection: object) -> bool:
    return driver_of(connection) == "sqlite3"


def is_postgres(connection: object) -> bool:
    return driver_of(connection) in POSTGRES_DRIVERS


def bound_waits(
    connection: Any, *, lock_timeout_ms: int, sqlite_busy_timeout_ms: int, statement_timeout_ms: int | None = None
) -> int:
    """Bound how long the session's statements wait (see the module's docstring) and commit; the statements sent.

    Other databases keep their own settings. Raises the driver's error.
    """
    cursor = connection.cursor()
    try:
        if is_sqlite(connection):
            cursor.execute(f"PRAGMA busy_timeout = {int(sqlite_busy_timeout_ms)}")
            return 1
        if not is_postgres(connection):
            return 0
        bounds = {"lock_timeout": lock_timeout_ms, "statement_timeout": statement_timeout_ms}
        cursor.execute("SELECT name, setting FROM pg_settings WHERE name IN ('lock_timeout', 'statement_timeout')")
        current = {str(name): int(setting) for name, setting in cursor.fetchall()}  # milliseconds; 0: no bound
        sent = 1
        for name, bound in bounds.items():
            if bound is not None and (current.get(name, 0) == 0 or current[name] > bound):
                cursor.execute(f"SET {name} = {int(bound)}")
                sent += 1
        connection.commit()  # a SET rolled back would be undone
        return sent + 1
    finally:
        cursor.close()


class SessionThread:
    """The one thread that runs a connection's statements, started on first use.

    :meth:`run` waits for the result (and runs the call directly when already on the thread);
    :meth:`submit` returns the future. :meth:`shutdown` ends the thread; a later call starts another.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._executor: ThreadPoolExecutor | None = None
        self._ident: int | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> bool:
        return self._executor is not None

    @property
    def is_current(self) -> bool:
        """Whether the caller runs on this thread."""
        return self._ident is not None and threading.get_ident() == self._ident

    def submit(self, call: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix=self.name)
                self._ident = self._executor.submit(threading.get_ident).result()
            return self._executor.submit(call, *args, **kwargs)

    def run(self, call: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``call(*args, **kwargs)`` on this thread, its result or its exception returned here."""
        if self.is_current:
            return call(*args, **kwargs)
        return self.submit(call, *args, **kwargs).result()

    def shutdown(self) -> None:
        """End the thread once the calls submitted have run."""
        with self._lock:
            executor, self._executor, self._ident = self._executor, None, None
        if executor is not None:
            executor.shutdown(wait=True)
