"""A PostgreSQL database of its own for a test, dropped afterwards.

The server is ``$TEST_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``,
trust auth). Outside CI a test skips, with one line saying why, when the server cannot be
reached; under ``CI=true`` that is a failure, so CI never passes by skipping.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

ADMIN_DSN = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def unavailable(why: str) -> None:
    """Skip (or, under CI=true, fail) a test that needs PostgreSQL."""
    message = f"PostgreSQL unavailable ({why}); set TEST_PG_DSN to a server's DSN"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def fresh_database() -> Iterator[str]:
    """Create an empty database, yield its DSN, drop it (and its connections) after."""
    try:
        import psycopg
    except ImportError as exc:
        unavailable(f"psycopg is not installed: {exc}")
    name = f"greenroom_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        unavailable(str(exc).strip().splitlines()[0])
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        base = psycopg.conninfo.conninfo_to_dict(ADMIN_DSN)
        base["dbname"] = name
        try:
            yield psycopg.conninfo.make_conninfo(**base)  # type: ignore[arg-type]
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
