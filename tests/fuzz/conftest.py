"""Fuzzing and hostile input (issue 18): the Hypothesis profiles and the count of cases per target.

Profiles (fuzz_support.py registers them on import): "fuzz-ci", the default, runs a bounded,
derandomised number of examples per test with a 5 s deadline each, so that `make test` is
reproducible and the whole directory stays within about 3 minutes on 2 cores; "fuzz-long" (or
"long") runs 20 times as many random examples::

    HYPOTHESIS_PROFILE=fuzz-long .venv/bin/pytest tests/fuzz -q

Every example runs inside `fuzz_cases.case(target)`, which counts it as run, and as failed when it
raises (Hypothesis's shrinking replays included). At the end of the session the counts per target go
to out/fuzz/counts.json (out/fuzz/counts-<profile>.json for another profile), the figures of
docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_servers import FuzzServer, start_personalization
from fuzz_support import PROFILE, FuzzCases
from postgres_server import PostgresServer

OUT = Path(__file__).resolve().parents[2] / "out" / "fuzz"
COUNTS_FILE = OUT / ("counts.json" if PROFILE == "fuzz-ci" else f"counts-{PROFILE}.json")


@pytest.fixture(scope="session")
def fuzz_cases(request: pytest.FixtureRequest) -> Iterator[FuzzCases]:
    cases = FuzzCases()
    start = time.perf_counter()
    yield cases
    command = f"HYPOTHESIS_PROFILE={PROFILE} .venv/bin/pytest {' '.join(request.config.invocation_params.args)}"
    COUNTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    COUNTS_FILE.write_text(json.dumps(cases.as_json(time.perf_counter() - start, command), indent=2) + "\n")


# ---------------------------------------------------------------- personalization, on each backend


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def personalization_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzServer]:
    """PersonalizationService in-process on a freshly seeded small synthetic database (SQLite or PostgreSQL)."""
    directory = tmp_path_factory.mktemp(f"personalization-fuzz-{request.param}")
    database = ""
    if request.param == "sqlite":
        url = f"sqlite:///{directory / 'personalization.sqlite3'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        database = server.create_database()
        url = server.url(database)
    running = start_personalization(directory, url)
    yield running
    running.stop()
    if database:
        request.getfixturevalue("postgres").drop_database(database)
