"""A real PostgreSQL server for the tests and the benchmarks: Debian's binaries, initdb + pg_ctl in a temporary
directory.

The server listens on a free loopback port only (and on a unix socket inside its own directory),
with trust authentication and the superuser `retailface`; for the tests fsync is off, for the
benchmarks (`durable=True`) commits reach the disk as in production. initdb refuses to run as root,
so as root (the tests' user here and in CI) the server runs as the `postgres` system user that the
Debian package creates, in a directory handed to it. Missing binaries fail the tests that need the
server, naming what is missing: CI must prove that the PostgreSQL tests ran.

`scripts/ensure_postgres.sh` (a prerequisite of `make test`) installs the package when missing.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

from retailface.devtools.localstack import free_port

SUPERUSER = "retailface"
RUN_AS = "postgres"  # the Debian package's system user, when we are root
SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
}
# A test server: losing it on a power cut is fine. A benchmark keeps PostgreSQL's durable defaults.
NOT_DURABLE = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def pg_bin() -> Path | None:
    """The binary directory: RETAILFACE_PG_BIN, else the newest /usr/lib/postgresql/*/bin."""
    configured = os.environ.get("RETAILFACE_PG_BIN")
    if configured:
        return Path(configured)
    versions = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.parent.name.isdigit()]
    return max(versions, key=lambda p: int(p.parent.name), default=None)


def missing_binaries() -> list[str]:
    """The server binaries that are not there (empty when the server can run)."""
    directory = pg_bin() or Path("/usr/lib/postgresql/15/bin")
    return [str(directory / name) for name in ("initdb", "pg_ctl", "postgres") if not (directory / name).is_file()]


class PostgresServer:
    """One server: `start()`, databases by name, `stop()`; `url(db)` is a SQLAlchemy psycopg URL."""

    def __init__(self, root: Path | None = None, durable: bool = False) -> None:
        missing = missing_binaries()
        if missing:
            raise FileNotFoundError(
                f"PostgreSQL server binaries missing: {', '.join(missing)}; run scripts/ensure_postgres.sh "
                "(apt-get install postgresql) or set RETAILFACE_PG_BIN"
            )
        self.bin = pg_bin() or Path("/usr/lib/postgresql/15/bin")
        self.root = Path(root or tempfile.mkdtemp(prefix="retailface-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        self.settings = SETTINGS if durable else SETTINGS | NOT_DURABLE
        self.running = False

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", RUN_AS, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.is_file() else ""
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}\n{tail}")

    def init(self) -> None:
        self.sockets.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            account = pwd.getpwnam(RUN_AS)
            for path in (self.root, self.sockets):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "--username",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> PostgresServer:
        if not self.data.exists():
            self.init()
        options = " ".join(f"-c {name}={value}" for name, value in self.settings.items())
        options += f" -p {self.port} -k {self.sockets}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")
        self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
            self.running = False

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def libpq_url(self, database: str = "postgres") -> str:
        """The same database as a libpq URL (what matching's RETAILFACE_MATCHING_DB_URL takes)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname=database, autocommit=True)

    def create_database(self, name: str = "", template: str = "", conn: psycopg.Connection | None = None) -> str:
        """A new database (a copy of `template` when given); returns its name. `conn`: an admin connection."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:  # WAL_LOG, PostgreSQL 15's default: no checkpoint, ~50 ms for the personalization seed
            statement = sql.SQL("{} TEMPLATE {}").format(statement, sql.Identifier(template))
        if conn is not None:
            conn.execute(statement)
            return name
        with self.connect() as own:
            own.execute(statement)
        return name

    def drop_database(self, name: str, conn: psycopg.Connection | None = None) -> None:
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        if conn is not None:
            conn.execute(statement)
            return
        with self.connect() as own:
            own.execute(statement)

    @contextmanager
    def database(self, template: str = "") -> Iterator[str]:
        """A database of its own for one test (its SQLAlchemy URL), dropped afterwards."""
        name = self.create_database(template=template)
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)
