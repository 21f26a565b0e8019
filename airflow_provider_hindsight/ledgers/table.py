"""A table's shape and the SQL text of its statements.

:class:`TableSpec` declares a table: what it is (for messages), its :class:`Column` list and its
primary key. :class:`TableStatements` runs that table's statements on a cursor it is given (batched
look-ups by key, one ``a = ? AND b IN (...)`` condition per key prefix; inserts; updates and
deletions by key; upserts, the dialect's own or a portable UPDATE then INSERT); committing and
retrying are :class:`~.sql.SqlTable`'s. Rows are tuples of every column in the spec's order; keys
are tuples of the key columns in their order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_hindsight.ledgers.dialect import SqlDialect
from airflow_provider_hindsight.ledgers.values import whole_number

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Column:
    """One column: its name and SQL type; key columns are always ``NOT NULL``.

    A nullable column may be added to a table made by an earlier version (``ALTER TABLE ... ADD COLUMN``).
    """

    name: str
    sql_type: str
    nullable: bool = False


@dataclass(frozen=True)
class TableSpec:
    """A table the provider keeps: ``kind`` names it in messages ("... is not a <kind>")."""

    kind: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    others_columns: tuple[str, ...] = ()
    """Columns another user of the table may add and keeps (the answers trigger's ``announced_at``): a table
    with them is still this kind; this spec's statements leave them alone."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)

    def key_of(self, row: Row) -> Row:
        names = self.names
        return tuple(row[names.index(name)] for name in self.key)

    def column_sql(self, column: Column) -> str:
        null = "" if column.nullable and column.name not in self.key else " NOT NULL"
        return f"{column.name} {column.sql_type}{null}"

    def create_sql(self, table: str) -> str:
        """``CREATE TABLE IF NOT EXISTS`` of the columns and primary key."""
        lines = [f"    {self.column_sql(column)}," for column in self.columns]
        lines.append(f"    PRIMARY KEY ({', '.join(self.key)})")
        return f"CREATE TABLE IF NOT EXISTS {table} (\n" + "\n".join(lines) + "\n)"

    def add_column_sql(self, table: str, column: Column) -> str:
        """``ALTER TABLE ... ADD COLUMN`` of a column a table from an earlier version lacks."""
        return f"ALTER TABLE {table} ADD COLUMN {self.column_sql(column)}"


class TableStatements:
    """The statements of the table ``table`` shaped as ``spec``, in ``dialect``'s SQL, on a given cursor."""

    def __init__(self, spec: TableSpec, table: str, dialect: SqlDialect) -> None:
        self.spec = spec
        self.table = table
        self.dialect = dialect
        self.upsert_sql = dialect.upsert_sql(table, spec.names, spec.key)
        """The dialect's upsert of one row, or ``None``: UPDATE, then INSERT."""
        self.absent: frozenset[str] = frozenset()
        """Columns an earlier version's table lacks, read as ``NULL`` (a dry run does not add them)."""

    def select(self, cursor: Any, columns: Sequence[str], keys: Sequence[Row]) -> list[Row]:
        """``columns`` of the rows with these keys: one statement per key prefix."""
        found: list[Row] = []
        selected = ", ".join(f"NULL AS {name}" if name in self.absent else name for name in columns)
        for prefix, lasts in self._key_groups(keys):
            where, parameters = self._where_keys(prefix, lasts)
            cursor.execute(f"SELECT {selected} FROM {self.table} WHERE {where}", parameters)
            found.extend(tuple(row) for row in cursor.fetchall())
        return found

    def insert(self, cursor: Any, rows: Sequence[Row]) -> None:
        names = self.spec.names
        values = self.dialect.placeholders(len(names))
        cursor.executemany(f"INSERT INTO {self.table} ({', '.join(names)}) VALUES ({values})", list(rows))

    def update(self, cursor: Any, columns: Sequence[str], rows: Sequence[Row]) -> int:
        """Set ``columns`` of each row's key (a row is the new values, then the key); rows changed."""
        statement = self._update_sql(columns)
        changed = 0
        for row in rows:  # one execute per row: executemany's rowcount is not portable
            cursor.execute(statement, tuple(row))
            changed += max(cursor.rowcount, 0)
        return changed

    def upsert(self, cursor: Any, rows: Sequence[Row]) -> None:
        """The dialect's upsert, else an UPDATE of the keys that exist and an INSERT of the others."""
        if self.upsert_sql is not None:
            cursor.executemany(self.upsert_sql, list(rows))
            return
        key_of = self.spec.key_of
        keys = [key_of(row) for row in rows]
        existing = {tuple(whole_number(part) for part in found) for found in self.select(cursor, self.spec.key, keys)}
        names = self.spec.names
        others = [name for name in names if name not in self.spec.key]
        pairs = list(zip(rows, keys, strict=True))
        updates = [(*(row[names.index(name)] for name in others), *key) for row, key in pairs if key in existing]
        inserts = [row for row, key in pairs if key not in existing]
        if updates:
            cursor.executemany(self._update_sql(others), updates)
        if inserts:
            self.insert(cursor, inserts)

    def delete(self, cursor: Any, keys: Sequence[Row]) -> None:
        for prefix, lasts in self._key_groups(keys):
            where, parameters = self._where_keys(prefix, lasts)
            cursor.execute(f"DELETE FROM {self.table} WHERE {where}", parameters)

    def _update_sql(self, columns: Sequence[str]) -> str:
        p = self.dialect.placeholder
        assignments = ", ".join(f"{name} = {p}" for name in columns)
        where = " AND ".join(f"{name} = {p}" for name in self.spec.key)
        return f"UPDATE {self.table} SET {assignments} WHERE {where}"

    @staticmethod
    def _key_groups(keys: Sequence[Row]) -> Iterator[tuple[Row, list[Any]]]:
        """Keys grouped by all but their last column: one ``a = ? AND b IN (...)`` condition per group."""
        groups: dict[Row, list[Any]] = {}
        for key in keys:
            groups.setdefault(tuple(key[:-1]), []).append(key[-1])
        yield from groups.items()

    def _where_keys(self, prefix: Row, lasts: Sequence[Any]) -> tuple[str, tuple[Any, ...]]:
        p = self.dialect.placeholder
        conditions = [f"{name} = {p}" for name in self.spec.key[:-1]]
        conditions.append(f"{self.spec.key[-1]} IN ({self.dialect.placeholders(len(lasts))})")
        return " AND ".join(conditions), (*prefix, *lasts)
