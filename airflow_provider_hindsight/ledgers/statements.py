"""The SQL text of a ledger's statements, built from its :class:`Column` spec and key, over a cursor.

:class:`SqlStatements` is the base of :class:`~.sql.SqlTable`: ``CREATE TABLE``, batched look-ups by
key (one ``a = ? AND b IN (...)`` condition per key prefix), inserts, updates and deletions by key,
and upserts (the dialect's own from :func:`upsert_statement`, else a portable UPDATE then INSERT),
each run on a cursor it is given; committing and retrying are the table's. Also :func:`utc_now` and
:func:`batches`.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, ClassVar, TypeVar

_REPLACE_INTO_DIALECTS = frozenset({"sqlite", "mysql", "mariadb"})
"""Dialects whose ``REPLACE INTO`` (the generic dialect's replace statement) is an upsert."""

log = logging.getLogger(__name__)
T = TypeVar("T")
Row = tuple[Any, ...]


@dataclass(frozen=True)
class Column:
    """One column of a ledger table: its name and SQL type; key columns are always ``NOT NULL``."""

    name: str
    sql_type: str
    nullable: bool = False


class SqlStatements:
    """The statements of one ledger table over a cursor: a subclass sets :attr:`COLUMNS` and :attr:`KEY`.

    Rows are tuples of every column in :attr:`COLUMNS` order; keys are tuples of the :attr:`KEY`
    columns in that order. :class:`~.sql.SqlTable` sets the instance attributes declared here.
    """

    COLUMNS: ClassVar[tuple[Column, ...]] = ()
    KEY: ClassVar[tuple[str, ...]] = ()
    """The primary key's columns."""

    table: str
    _hook: Any
    """The connection's ``DbApiHook``: its ``placeholder``."""
    _upsert_sql: str | None
    """The dialect's upsert of one row (:func:`upsert_statement`), or ``None``: UPDATE, then INSERT."""
    _is_sqlite: bool

    @classmethod
    def column_names(cls) -> tuple[str, ...]:
        return tuple(column.name for column in cls.COLUMNS)

    @classmethod
    def create_table_sql(cls, table: str) -> str:
        """``CREATE TABLE IF NOT EXISTS`` of this ledger's columns and primary key."""
        lines = []
        for column in cls.COLUMNS:
            null = "" if column.nullable and column.name not in cls.KEY else " NOT NULL"
            lines.append(f"    {column.name} {column.sql_type}{null},")
        lines.append(f"    PRIMARY KEY ({', '.join(cls.KEY)})")
        return f"CREATE TABLE IF NOT EXISTS {table} (\n" + "\n".join(lines) + "\n)"

    @property
    def _placeholder(self) -> str:
        return str(self._hook.placeholder)

    def _placeholders(self, count: int) -> str:
        return ", ".join([self._placeholder] * count)

    def _key_of(self, row: Row) -> Row:
        names = self.column_names()
        return tuple(row[names.index(name)] for name in self.KEY)

    def _key_groups(self, keys: Sequence[Row]) -> Iterator[tuple[Row, list[Any]]]:
        """Keys grouped by all but their last column: one ``a = ? AND b IN (...)`` condition per group."""
        groups: dict[Row, list[Any]] = {}
        for key in keys:
            groups.setdefault(tuple(key[:-1]), []).append(key[-1])
        yield from groups.items()

    def _where_keys(self, prefix: Row, lasts: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        p = self._placeholder
        conditions = [f"{name} = {p}" for name in self.KEY[:-1]]
        conditions.append(f"{self.KEY[-1]} IN ({self._placeholders(len(lasts))})")
        return " AND ".join(conditions), (*prefix, *lasts)

    def _select(self, cursor: Any, columns: Sequence[str], keys: Sequence[Row]) -> list[Row]:
        """``columns`` of the rows with these keys: one statement per key prefix (see :meth:`_key_groups`)."""
        found: list[Row] = []
        for prefix, lasts in self._key_groups(keys):
            where, parameters = self._where_keys(prefix, lasts)
            cursor.execute(f"SELECT {', '.join(columns)} FROM {self.table} WHERE {where}", parameters)
            found.extend(tuple(row) for row in cursor.fetchall())
        return found

    def _insert(self, cursor: Any, rows: Sequence[Row]) -> None:
        names = self.column_names()
        cursor.executemany(
            f"INSERT INTO {self.table} ({', '.join(names)}) VALUES ({self._placeholders(len(names))})", list(rows)
        )

    def _update(self, cursor: Any, columns: Sequence[str], rows: Sequence[Row]) -> int:
        p = self._placeholder
        assignments = ", ".join(f"{name} = {p}" for name in columns)
        where = " AND ".join(f"{name} = {p}" for name in self.KEY)
        changed = 0
        for row in rows:  # one execute per row: executemany's rowcount is not portable
            cursor.execute(f"UPDATE {self.table} SET {assignments} WHERE {where}", tuple(row))
            changed += max(cursor.rowcount, 0)
        return changed

    def _upsert(self, cursor: Any, rows: Sequence[Row]) -> None:
        """The dialect's upsert, else an UPDATE of the keys that exist and an INSERT of the others."""
        if self._upsert_sql is not None:
            cursor.executemany(self._upsert_sql, list(rows))
            return
        keys = [self._key_of(row) for row in rows]
        existing = {_like(keys[0], found) for found in self._select(cursor, self.KEY, keys)}
        names = self.column_names()
        others = [name for name in names if name not in self.KEY]
        pairs = list(zip(rows, keys, strict=True))
        updates = [(*(row[names.index(name)] for name in others), *key) for row, key in pairs if key in existing]
        inserts = [row for row, key in pairs if key not in existing]
        if updates:
            p = self._placeholder
            assignments = ", ".join(f"{name} = {p}" for name in others)
            where = " AND ".join(f"{name} = {p}" for name in self.KEY)
            cursor.executemany(f"UPDATE {self.table} SET {assignments} WHERE {where}", updates)
        if inserts:
            self._insert(cursor, inserts)

    def _delete(self, cursor: Any, keys: Sequence[Row]) -> None:
        for prefix, lasts in self._key_groups(keys):
            where, parameters = self._where_keys(prefix, lasts)
            cursor.execute(f"DELETE FROM {self.table} WHERE {where}", parameters)

    def _now(self) -> Any:
        return utc_now(self._is_sqlite)


def upsert_statement(hook: Any, table: str, columns: Sequence[str], key: Sequence[str]) -> str | None:
    """The hook's dialect's upsert of one row of ``columns`` on ``key``, or ``None`` when it has none.

    Postgres ``INSERT ... ON CONFLICT DO UPDATE``, any other dialect's own replace statement;
    SQLite and MySQL ``REPLACE INTO``. ``None`` means: update the keys that exist, insert the others.
    """
    try:
        from airflow.providers.common.sql.dialects.dialect import Dialect

        dialect = hook.dialect
        specific = type(dialect).generate_replace_sql is not Dialect.generate_replace_sql
        if not specific and hook.dialect_name not in _REPLACE_INTO_DIALECTS:
            return None
        return str(dialect.generate_replace_sql(table, (None,) * len(columns), list(columns), replace_index=list(key)))
    except Exception as error:  # common-sql without dialects, a dialect's provider missing, or no upsert
        log.debug("No upsert from the SQL dialect (%s): updating, then inserting.", error)
        return None


def utc_now(for_sqlite: bool) -> Any:
    """Now in UTC without time zone; as ISO text for SQLite, which has no timestamp type."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    return now.isoformat(sep=" ") if for_sqlite else now


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``, without reading ahead more than one list."""
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def _like(template: Row, found: Row) -> Row:
    """``found`` (a key read back) with the types of ``template`` (the key asked for): ``Decimal(3)`` is ``3``."""
    try:
        return tuple(type(want)(got) for want, got in zip(template, found, strict=True))
    except (TypeError, ValueError):
        return tuple(found)
