"""Fixtures of the cluster tests: the own PostgreSQL instance of this test run, and
HAProxy. Each skips with one line when its tool is missing, and fails under CI=true."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster import haproxy, postgres
from tests.cluster.procs import unavailable


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.Postgres]:
    """A PostgreSQL 15 server of our own for the whole run (each test makes its own
    database in it); stopped and removed at the end."""
    reason = postgres.missing()
    if reason is not None:
        unavailable(reason)
    server = postgres.Postgres()
    try:
        server.init()
        server.start()
    except (RuntimeError, OSError) as exc:
        server.destroy()
        unavailable(f"PostgreSQL could not start: {str(exc).splitlines()[0]}")
    yield server
    server.destroy()


@pytest.fixture
def haproxy_bin() -> str:
    """The haproxy executable."""
    exe = haproxy.binary()
    if exe is None:
        unavailable("haproxy is not installed (apt-get install -y haproxy)")
    return exe
