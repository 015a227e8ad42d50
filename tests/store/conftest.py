"""Every store test named ``store`` runs on each store: memory, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from greenroom.store import MemoryStore
from greenroom.store.sqlite import SqliteStore
from greenroom.typing import Store
from tests.pg import fresh_database


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "postgres":
        from greenroom.store.postgres import PostgresStore

        with fresh_database() as dsn:
            opened: Store = PostgresStore(dsn, pool_size=2)
            opened.open()
            yield opened
            opened.close()
        return
    opened = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "g.db")
    opened.open()
    yield opened
    opened.close()
