"""The tests' PostgreSQL: the server (devtools/pgserver.py) and copies of a template database made ahead.

`scripts/ensure_postgres.sh` (a prerequisite of `make test`) installs the server package when missing.
"""

from __future__ import annotations

import queue
import threading

from retailface.devtools.pgserver import PostgresServer, missing_binaries, pg_bin

__all__ = ["DatabaseCopies", "PostgresServer", "missing_binaries", "pg_bin"]


class DatabaseCopies:
    """Copies of a template database made ahead of need, and dropped, by a background thread.

    A `CREATE DATABASE ... TEMPLATE` of the personalization seed costs 0.1-0.3 s of server time: made
    while the previous test runs, it costs the next test nothing. `take()` waits for the next copy.
    """

    def __init__(self, server: PostgresServer, template: str, ahead: int = 2) -> None:
        self._server = server
        self._template = template
        self._ready: queue.Queue[str | BaseException] = queue.Queue(maxsize=ahead)
        self._to_drop: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-database-copies", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # One connection for the thread's life: a connection handshake is many round trips, each
        # waiting for the GIL while the tests run.
        try:
            with self._server.connect() as conn:
                while not self._stop.is_set():
                    while not self._to_drop.empty():
                        self._server.drop_database(self._to_drop.get(), conn)
                    if self._ready.full():
                        self._stop.wait(0.005)
                        continue
                    self._ready.put(self._server.create_database(template=self._template, conn=conn))
        except Exception as error:  # handed to the test that takes the next copy
            self._ready.put(error)

    def url(self, name: str) -> str:
        return self._server.url(name)

    def take(self) -> str:
        """The name of a fresh copy (hand it back to `drop`)."""
        made = self._ready.get(timeout=120)
        if isinstance(made, BaseException):
            raise made
        return made

    def drop(self, name: str) -> None:
        self._to_drop.put(name)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)
        while not self._ready.empty():
            made = self._ready.get()
            if isinstance(made, str):
                self._server.drop_database(made)
        while not self._to_drop.empty():
            self._server.drop_database(self._to_drop.get())
