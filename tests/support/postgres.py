"""A throw-away PostgreSQL server on 127.0.0.1, for the tests (a pytest plugin) and the benchmarks.

Fixtures:

- ``postgres_server`` (session): a :class:`PostgresServer`, started once, stopped and deleted at the end.
- ``postgres_database``: a fresh, empty :class:`PostgresDatabase` for the test.
- ``postgres_conn_id``: the id of an Airflow ``postgres`` connection to ``postgres_database``, set as an
  ``AIRFLOW_CONN_...`` environment variable for the test.

The server runs the ``initdb`` / ``pg_ctl`` / ``postgres`` of the newest ``/usr/lib/postgresql/<version>``
(else those on ``PATH``), as the ``postgres`` user when the tests run as root (``initdb`` refuses root),
listens on 127.0.0.1 only, on a free port, and trusts every local connection. Without the binaries,
or when the server does not start, the tests that need it are skipped with the reason; with ``CI=true``
they fail instead, so that CI never passes without them.

Outside pytest (benchmarks): ``with PostgresServer.start() as server: server.create_database("bench")``.
"""

from __future__ import annotations

import atexit
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_hindsight.testing.ports import free_port

SERVER_PROGRAMS = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "postgres"
HOST = "127.0.0.1"
POSTGRES_CONN_ID = "hindsight_postgres"
"""The Airflow connection id the ``postgres_conn_id`` fixture sets."""
START_ATTEMPTS = 3
"""Ports tried: another process may take the free port between choosing it and the server binding it."""


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server can run here; the message says why and how to fix it."""


def find_server_programs() -> dict[str, str]:
    """Paths of ``initdb``, ``pg_ctl`` and ``postgres``: the newest ``/usr/lib/postgresql/<v>/bin``, else ``PATH``."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for directory in versions:
        if all((directory / name).is_file() for name in SERVER_PROGRAMS):
            return {name: str(directory / name) for name in SERVER_PROGRAMS}
    found = {name: shutil.which(name) for name in SERVER_PROGRAMS}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise PostgresUnavailable(
            f"PostgreSQL server programs not found ({', '.join(missing)}) under /usr/lib/postgresql/*/bin or on "
            "PATH. Install them, for example `apt-get install postgresql`."
        )
    return {name: str(path) for name, path in found.items()}


def _version_key(directory: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", directory.parent.name))


@dataclass(frozen=True)
class PostgresDatabase:
    """One database on the server, and the ways to connect to it."""

    host: str
    port: int
    user: str
    name: str

    @property
    def params(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect`` / ``psycopg2.connect``."""
        return {"host": self.host, "port": self.port, "user": self.user, "dbname": self.name}

    @property
    def dsn(self) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={self.name}"

    def airflow_connection(self, *, login: str | None = None, extra: dict[str, Any] | None = None) -> str:
        """The JSON form of an Airflow ``postgres`` connection to this database (no password: trust auth)."""
        connection: dict[str, Any] = {
            "conn_type": "postgres",
            "host": self.host,
            "port": self.port,
            "login": login or self.user,
            "schema": self.name,
        }
        if extra:
            connection["extra"] = extra
        return json.dumps(connection)

    def set_airflow_connection(
        self,
        monkeypatch: pytest.MonkeyPatch,
        conn_id: str,
        *,
        login: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Define ``conn_id`` for this test as an ``AIRFLOW_CONN_<ID>`` environment variable; returns ``conn_id``."""
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", self.airflow_connection(login=login, extra=extra))
        return conn_id


class PostgresServer:
    """A PostgreSQL server in a temporary directory, listening on 127.0.0.1 only, with trust authentication."""

    def __init__(self, programs: dict[str, str], directory: Path, port: int, run_as: str | None) -> None:
        self.host = HOST
        self.port = port
        self.user = SUPERUSER
        self.directory = directory
        self._programs = programs
        self._run_as = run_as
        self._database_names: set[str] = set()
        self._running = True

    @classmethod
    def start(cls) -> PostgresServer:
        """Create a cluster in a new temporary directory and start it; raises :class:`PostgresUnavailable`."""
        programs = find_server_programs()
        owner = _server_account() if os.geteuid() == 0 else None
        run_as = owner.pw_name if owner else None
        directory = Path(tempfile.mkdtemp(prefix="hindsight-postgres-"))
        try:
            if owner is not None:
                os.chown(directory, owner.pw_uid, owner.pw_gid)
            initdb = ["-D", str(directory / "data"), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-locale"]
            _run(programs, run_as, "initdb", *initdb, "--no-sync")
            server = cls._start_on_free_port(programs, directory, run_as)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        atexit.register(server.stop)
        return server

    @classmethod
    def _start_on_free_port(cls, programs: dict[str, str], directory: Path, run_as: str | None) -> PostgresServer:
        error: PostgresUnavailable | None = None
        for _ in range(START_ATTEMPTS):
            port = free_port(HOST)
            options = (
                f"-c listen_addresses={HOST} -p {port} -k {directory} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                data, log = str(directory / "data"), str(directory / "server.log")
                _run(programs, run_as, "pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o", options, "start")
            except PostgresUnavailable as failure:
                error = failure
                continue
            return cls(programs, directory, port, run_as)
        log = directory / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise PostgresUnavailable(f"{error}\nserver log:\n{tail}")

    def stop(self) -> None:
        """Stop the server and delete its directory; safe to call twice."""
        if not self._running:
            return
        self._running = False
        data = str(self.directory / "data")
        try:
            _run(self._programs, self._run_as, "pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "30", "stop")
        except PostgresUnavailable:
            subprocess.run(
                [*_prefix(self._run_as), self._programs["pg_ctl"], "-D", data, "-m", "immediate", "stop"],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def database(self, name: str = "postgres") -> PostgresDatabase:
        """An existing database of this server, as the superuser."""
        return PostgresDatabase(self.host, self.port, self.user, name)

    def execute(self, sql: str, *, database: str = "postgres") -> None:
        """Run one statement as the superuser, outside a transaction (``CREATE DATABASE``, ``CREATE ROLE``, ...)."""
        params = self.database(database).params
        try:
            import psycopg
        except ImportError:
            import psycopg2

            connection = psycopg2.connect(**params)
            try:
                connection.autocommit = True
                with connection.cursor() as cursor:
                    cursor.execute(sql)
            finally:
                connection.close()
            return
        with psycopg.connect(**params, autocommit=True) as connection3:
            connection3.execute(sql.encode())

    def create_database(self, name: str) -> PostgresDatabase:
        """A new empty database named after ``name`` (made a valid, unused identifier)."""
        base = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")[:50] or "test"
        unique, number = base, 1
        while unique in self._database_names:
            number += 1
            unique = f"{base}_{number}"
        self._database_names.add(unique)
        self.execute(f'CREATE DATABASE "{unique}"')
        return self.database(unique)


def _server_account() -> pwd.struct_passwd:
    """The ``postgres`` account, to run the server as when the tests run as root (``initdb`` refuses root)."""
    try:
        return pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PostgresUnavailable(
            "running as root, and initdb refuses root: there is no 'postgres' user to run the server as. "
            "Install the postgresql package (it creates that user) or run the tests as another user."
        ) from None


def _prefix(run_as: str | None) -> list[str]:
    return ["runuser", "-u", run_as, "--"] if run_as else []


def _run(programs: dict[str, str], run_as: str | None, program: str, *arguments: str) -> None:
    """Run a server program (as ``run_as`` when set); raise :class:`PostgresUnavailable` with its output on failure."""
    command = [*_prefix(run_as), programs[program], *arguments]
    result = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-2000:]
        raise PostgresUnavailable(f"`{' '.join(command)}` failed with exit code {result.returncode}: {output}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's PostgreSQL server; skips (fails when ``CI=true``) when none can run here."""
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as error:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI runs the PostgreSQL tests, and no server could start: {error}", pytrace=False)
        pytest.skip(f"no PostgreSQL server: {error}")
    with server:
        yield server


@pytest.fixture
def postgres_database(postgres_server: PostgresServer, request: pytest.FixtureRequest) -> PostgresDatabase:
    """A fresh database for this test, named after it."""
    return postgres_server.create_database(request.node.name)


@pytest.fixture
def postgres_conn_id(postgres_database: PostgresDatabase, monkeypatch: pytest.MonkeyPatch) -> str:
    """An Airflow ``postgres`` connection to this test's database; returns its id."""
    return postgres_database.set_airflow_connection(monkeypatch, POSTGRES_CONN_ID)
